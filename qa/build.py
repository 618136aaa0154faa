"""Building a collection's index: ingest the corpus, encode passages and sentences, find who holds each reported
view (spaCy, in a second process), and write the index (index/build.py). Asking is qa/engine.py's."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from corpus.align import to_raw, word_alignment
from corpus.ingest import CORPUS_DIR, Corpus, load_corpus
from corpus.model import Passage
from index.build import build_index, embedding_text
from index.encoder import DEFAULT_MODEL, load_encoder
from index.layout import clean_text

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
    corpus_dir: Path = CORPUS_DIR, index_dir: Path = Path("var/index"), progress: bool = True, model=DEFAULT_MODEL
) -> Path:
    """Ingest the corpus, precompute what asking needs (sentence vectors, attributions), build the index."""
    corpus = load_corpus(corpus_dir)
    corpus.log_skipped()
    _check_parsable(corpus.passages)
    # spaCy (one core) parses in a second process while this one loads the model and encodes.
    parsed = _parse_in_background(corpus.passages)
    encoder = load_encoder(model)
    sentences, owners, spans = [], [], []
    for pos, p in enumerate(corpus.passages):
        for a, b in sentence_text_spans(p, corpus.texts[p.file]):
            sentences.append(clean_text(p.text[a:b]))
            owners.append(pos)
            spans.append([a, b])
    # While the parse holds one core, the passages are encoded on the other; then the sentences, on both.
    texts = [embedding_text(p) for p in corpus.passages]
    passage_vectors = encoder.encode_passages(texts, show_progress=progress, threads=1)
    vectors = encoder.encode_passages(sentences, show_progress=progress).astype(np.float16)
    extra = {
        "attributions": _attributions(corpus, parsed()),
        "sentence_owner": owners,
        "sentence_texts": sentences,
        "sentence_spans": spans,
        "viewpoints": corpus.viewpoints,
        "holders": corpus.holders,
    }
    return build_index(
        corpus.passages,
        list(corpus.works.values()),
        corpus.recorded_files,
        index_dir,
        model=model,
        extra=extra,
        arrays={"sentence_vectors": vectors},
        show_progress=progress,
        passage_vectors=passage_vectors,
    )


def _check_parsable(passages: list[Passage]) -> None:
    """Passages are capped in words, but one "word" can be a megabyte long (a hex dump): name its file now,
    not after minutes of encoding in an error from spaCy that names none."""
    for p in passages:
        if len(p.text) > PARSE_MAX_CHARS:
            size = f"{len(p.text):,} characters, over the {PARSE_MAX_CHARS:,} spaCy parses"
            raise ValueError(f"{p.file}: a passage (characters {p.start}-{p.end}) of {size}: is it text?")


def _parse_args(passages: list[Passage]) -> tuple[list[str], list[str]]:
    """The passages' texts, and for each the text before it in the same section: "he argues" refers back
    to a holder named there."""
    contexts = [
        prev.text if i and (prev := passages[i - 1]).work == p.work and prev.section == p.section else ""
        for i, p in enumerate(passages)
    ]
    return [p.text for p in passages], contexts


def _parse_in_background(passages: list[Passage]) -> Callable[[], list[list[dict]]]:
    """Start find_attributions in a spawned process; returns a function that waits for its result.

    If the process cannot start or dies, the parse runs here instead (and raises its own error, if any).
    """
    from qa.attribution import find_attributions

    texts, contexts = _parse_args(passages)
    ctx = multiprocessing.get_context("spawn")  # not fork: torch's thread pools may already exist here
    try:
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_parse_child, args=(send, texts, contexts), name="qa-parse", daemon=True)
        child.start()
        send.close()
    except OSError as exc:
        log.warning("parsing in this process: cannot start a second one (%s)", exc)
        return lambda: find_attributions(texts, contexts)

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

    return result


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
