"""Building a collection's index: ingest the corpus, encode passages and sentences, find who holds each reported
view (spaCy, in a second process), and write the index (index/build.py). Asking is qa/engine.py's.

A rebuild of an existing index encodes and parses only what is new (index/reuse.py)."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from corpus.align import to_raw, word_alignment
from corpus.ingest import CORPUS_DIR, Corpus, load_corpus
from corpus.model import Passage
from index.build import build_index, embedding_text
from index.encoder import DEFAULT_MODEL, load_encoder
from index.layout import clean_text
from index.reuse import (
    PARSE_KEYS,
    PASSAGE_KEYS,
    REUSE_EXTRA,
    SENTENCE_KEYS,
    Reusable,
    content_key,
    key_array,
    load_previous,
    reuse_record,
    vector_recipe,
)

log = logging.getLogger(__name__)
_PR_SET_NAME, _PR_SET_PDEATHSIG = 15, 1  # <linux/prctl.h>
PARSE_MAX_CHARS = 1_000_000  # spaCy's nlp.max_length: a longer text fails its parse (E088)


def sentence_text_spans(p: Passage, raw: str) -> list[tuple[int, int]]:
    """Offsets in p.text of each of its sentences (p.sentences are raw spans)."""
    align = word_alignment(p.text, raw[p.start : p.end], p.start)
    spans = []
    for a, b in p.sentences:
        words = [w for w in align if a <= w[2] < b]
        spans.append((words[0][0], words[-1][1]) if words else (0, 0))
    return spans


def build_default_index(
    corpus_dir: Path = CORPUS_DIR,
    index_dir: Path | str = Path("var/index"),
    progress: bool = True,
    model=DEFAULT_MODEL,
    reuse: bool = True,
    reuse_from: Path | str | None = None,
) -> Path | str:
    """Ingest the corpus, precompute what asking needs (sentence vectors, attributions), build the index.

    Vectors and parses of texts that the index at `reuse_from` (default: `index_dir`, the index this one
    replaces) already holds are taken from it, unless `reuse` is False: only new or changed passages are
    encoded and parsed, and the model is loaded only if there are any.
    """
    corpus = load_corpus(corpus_dir, progress=progress)
    corpus.log_skipped()
    _check_parsable(corpus.passages)
    work = _Inputs.of(corpus)
    recipe, parser = vector_recipe(model, section_prefix=True), _parser_version()
    reuse_from = reuse_from or index_dir  # a location: a directory or a store (index/stores.py)
    previous = load_previous(reuse_from, recipe, parser) if reuse else Reusable()
    to_parse = previous.missing_parses(work.parse_keys)
    # spaCy (one core) parses in a second process while this one loads the model and encodes: on the other core
    # while the parse lasts, on both after.
    parse = _parse_in_background([work.parse_texts[i] for i in to_parse], [work.contexts[i] for i in to_parse])
    encode = _encoding(model, progress, threads=lambda: 1 if parse.running() else None)
    passage_vectors, passages_encoded = previous.vectors(work.passage_keys, work.texts, encode, exact=True)
    vectors, sentences_encoded = previous.vectors(work.sentence_keys, work.sentences, encode, exact=False)
    parses = _merge_parses(previous, work.parse_keys, to_parse, parse.wait())
    counts = {"passages": len(work.texts), "passages_encoded": passages_encoded, "passages_parsed": len(to_parse)}
    counts |= {"sentences": len(work.sentences), "sentences_encoded": sentences_encoded}
    log.info("encoded %(passages_encoded)d of %(passages)d passages and %(sentences_encoded)d of %(sentences)d "
             "sentences, parsed %(passages_parsed)d passages; the rest was reused", counts)  # fmt: skip
    extra = {
        "attributions": _attributions(corpus, parses),
        "sentence_owner": work.owners,
        "sentence_texts": work.sentences,
        "sentence_spans": work.spans,
        "viewpoints": corpus.viewpoints,
        "holders": corpus.holders,
        "skipped": [{"file": s.file, "reason": s.reason} for s in corpus.skipped],  # the build's report
        REUSE_EXTRA: reuse_record(recipe, parser, parses, counts),
    }
    arrays = {
        "sentence_vectors": vectors.reshape(len(work.sentences), passage_vectors.shape[1]).astype(np.float16),
        PASSAGE_KEYS: key_array(work.passage_keys),
        SENTENCE_KEYS: key_array(work.sentence_keys),
        PARSE_KEYS: key_array(work.parse_keys),
    }
    return build_index(
        corpus.passages,
        list(corpus.works.values()),
        corpus.recorded_files,
        index_dir,
        model=model,
        extra=extra,
        arrays=arrays,
        show_progress=progress,
        passage_vectors=passage_vectors,
        reuse_from=reuse_from,
    )


def _check_parsable(passages: list[Passage]) -> None:
    """Passages are capped in words, but one "word" can be a megabyte long (a hex dump): name its file now,
    not after minutes of encoding in an error from spaCy that names none."""
    for p in passages:
        if len(p.text) > PARSE_MAX_CHARS:
            size = f"{len(p.text):,} characters, over the {PARSE_MAX_CHARS:,} spaCy parses"
            raise ValueError(f"{p.file}: a passage (characters {p.start}-{p.end}) of {size}: is it text?")


@dataclass
class _Inputs:
    """What a build encodes and parses, with the content key of each input."""

    texts: list[str]  # what the model sees of each passage
    sentences: list[str]
    owners: list[int]  # the passage of each sentence
    spans: list[list[int]]  # each sentence's offsets in its passage's text
    parse_texts: list[str]
    contexts: list[str]
    passage_keys: list[bytes]
    sentence_keys: list[bytes]
    parse_keys: list[bytes]

    @classmethod
    def of(cls, corpus: Corpus) -> _Inputs:
        sentences, owners, spans = [], [], []
        for pos, p in enumerate(corpus.passages):
            for a, b in sentence_text_spans(p, corpus.texts[p.file]):
                sentences.append(clean_text(p.text[a:b]))
                owners.append(pos)
                spans.append([a, b])
        texts = [embedding_text(p) for p in corpus.passages]
        parse_texts, contexts = _parse_args(corpus.passages)
        parse_keys = [content_key(t, c) for t, c in zip(parse_texts, contexts, strict=True)]
        keys = [content_key(t) for t in texts], [content_key(t) for t in sentences]
        return cls(texts, sentences, owners, spans, parse_texts, contexts, *keys, parse_keys)


def _encoding(model: str, progress: bool, threads: Callable[[], int | None]) -> Callable[[list[str]], np.ndarray]:
    """encode(texts) with the model, loaded on the first call (a build with nothing new never loads it)."""
    return lambda texts: load_encoder(model).encode_passages(texts, show_progress=progress, threads=threads)


def _merge_parses(previous: Reusable, keys: list[bytes], parsed_at: list[int], parsed: list[list[dict]]):
    """Every passage's parse: the new ones at `parsed_at`, the previous index's elsewhere."""
    fresh = dict(zip(parsed_at, parsed, strict=True))
    return [fresh[i] if i in fresh else previous.parses[k] for i, k in enumerate(keys)]


def _parser_version() -> str:
    """What a parse depends on besides its text: the attribution rules (their source) and spaCy's pipeline."""
    from qa import attribution

    h = hashlib.sha256(Path(attribution.__file__).read_bytes())
    for dist in ("spacy", *attribution.MODEL_NAMES):
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            pass
    return h.hexdigest()[:16]


def _parse_args(passages: list[Passage]) -> tuple[list[str], list[str]]:
    """The passages' texts, and for each the text before it in the same section: "he argues" refers back
    to a holder named there."""
    contexts = [
        prev.text if i and (prev := passages[i - 1]).work == p.work and prev.section == p.section else ""
        for i, p in enumerate(passages)
    ]
    return [p.text for p in passages], contexts


@dataclass
class _Parse:
    wait: Callable[[], list[list[dict]]]  # the parses, once done
    running: Callable[[], bool]  # whether the parse still holds a core


def _parse_in_background(texts: list[str], contexts: list[str]) -> _Parse:
    """Start find_attributions in a spawned process.

    If the process cannot start or dies, the parse runs here instead (and raises its own error, if any).
    Nothing to parse starts nothing.
    """
    from qa.attribution import find_attributions

    if not texts:
        return _Parse(lambda: [], lambda: False)
    ctx = multiprocessing.get_context("spawn")  # not fork: torch's thread pools may already exist here
    try:
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_parse_child, args=(send, texts, contexts), name="qa-parse", daemon=True)
        child.start()
        send.close()
    except OSError as exc:
        log.warning("parsing in this process: cannot start a second one (%s)", exc)
        return _Parse(lambda: find_attributions(texts, contexts), lambda: False)

    def result() -> list[list[dict]]:
        try:
            ok, value = receive.recv()
        except (EOFError, OSError):
            ok, value = False, "the parsing process died"
        except BaseException:  # Ctrl-C while waiting: the parse is no longer wanted, and join() would wait for it
            child.terminate()
            raise
        finally:
            receive.close()
            child.join()
        if ok:
            return value
        log.warning("parsing in this process: %s", value)
        return find_attributions(texts, contexts)

    # Sending a large result blocks until it is read: a child with its result ready is idle, not running.
    return _Parse(result, lambda: child.is_alive() and not receive.poll())


def _parse_child(send, texts: list[str], contexts: list[str]) -> None:
    _die_with_parent()
    from qa.attribution import find_attributions

    try:
        result = (True, find_attributions(texts, contexts))
    except Exception as exc:
        result = (False, f"{type(exc).__name__}: {exc}")
    try:
        send.send(result)
    except OSError:  # the build was killed meanwhile: nobody waits for the result
        pass


def _die_with_parent() -> None:
    """The parse is wanted only by the build that started it: when that process dies, however it dies (SIGKILL
    included), this one goes too rather than parsing on for nobody (and holding a core)."""
    # Ctrl-C signals the whole process group: the parent decides, and ends this process when it exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
            prctl(_PR_SET_NAME, b"qa-parse", 0, 0, 0)  # what ps and top show for this process
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the kernel kills us when the parent exits
        except (OSError, AttributeError):
            pass
    # Everywhere (and if the parent died before the death signal was armed): a thread that waits on the
    # parent's sentinel, which multiprocessing gives every child, and exits when it fires.
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(1)


def _attributions(corpus: Corpus, found: list[list[dict]]) -> dict[str, list[dict]]:
    """Holders of the views each passage reports (as find_attributions returned them for the passages'
    texts), moved to raw-file coordinates."""
    out = {}
    for p, items in zip(corpus.passages, found, strict=True):
        align = word_alignment(p.text, corpus.texts[p.file][p.start : p.end], p.start)
        mapped = []
        for a in items:
            span = to_raw(align, a["start"], a["end"])
            if span:
                mapped.append({"holder": a["holder"], "cue": a["cue"], "start": span[0], "end": span[1]})
        out[p.id] = mapped
    return out
