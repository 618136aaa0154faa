"""Ingestion: corpus files + manifest -> works and faithful passages.

Files with a manifest entry get its works; other files are ingested with what they state about themselves
(Markdown front matter, HTML meta tags, PDF document info, DOCX core properties) and what can be inferred (title
from the first heading or the file name). Files that are empty, binary, not text (UTF-8, or UTF-16/UTF-8 with a
byte-order mark), without a text layer, over MAX_FILE_MB, of an unknown format, symbolic links or folders are
reported and skipped; they never stop the others.

A PDF's or DOCX's raw text (what passage offsets point into) is the text extracted from it: `raw_text` gives
it for any file, and everything that reads a corpus file again must read it through `raw_text`.
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from corpus.clean import HEADING_MARK, clean_text
from corpus.formats import EXTRACTORS, FRONT_MATTER, Extracted, Metadata, byline, extract, front_matter
from corpus.html import html_dropped, html_page
from corpus.mapped import MappedText
from corpus.model import Note, Passage, Work
from corpus.passages import WorkText, build_passages
from corpus.structure import MD_HEADING, Dropped, drop_junk, opening_title, paragraphs, sentences

log = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).resolve().parent
MANIFEST_NAME = "manifest.toml"
FORMATS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
           ".htm": "html", ".pdf": "pdf", ".docx": "docx"}  # fmt: skip
# What a file's own manifest entry may state about the one work it holds (the rest is inferred).
STATED_FIELDS = ("title", "authors", "year", "kind", "viewpoint", "viewpoint_label")
# Larger files are refused, not read: ingestion holds about 100 bytes a character of a file at its peak, and
# encoding a file's passages takes minutes a megabyte on a CPU. $QA_MAX_FILE_MB overrides.
MAX_FILE_MB = 10
# UTF-32's marks first: UTF-16's are their prefixes.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass
class Skipped:
    file: str
    reason: str


@dataclass
class WorkStats:
    passages: int = 0
    words: int = 0
    duplicates_collapsed: int = 0
    chrome_dropped_chars: int = 0


@dataclass
class Corpus:
    root: Path
    name: str
    works: dict[str, Work]
    passages: list[Passage]
    files: dict[str, str]  # file name -> sha256 of its bytes
    texts: dict[str, str]  # file name -> raw text (a PDF's or DOCX's: its extracted text)
    viewpoints: dict[str, str]  # label -> description
    holders: dict[str, str]  # known holder -> viewpoint label
    skipped: list[Skipped] = field(default_factory=list)
    stats: dict[str, WorkStats] = field(default_factory=dict)
    pages: dict[str, list[int]] = field(default_factory=dict)  # paginated file -> raw offset where each page begins
    manifest_files: dict[str, str] = field(default_factory=dict)  # {"manifest.toml": sha256}, if there is one
    # With load_corpus(trace=True): file -> what cleaning and structure left out of every passage, by rule.
    dropped: dict[str, list[Dropped]] | None = None

    @property
    def recorded_files(self) -> dict[str, str]:
        """What an index built from this corpus records, for staleness: corpus_files(root)."""
        return self.files | self.manifest_files

    def log_skipped(self) -> None:
        """One line for each file not ingested, and how many: nothing is left out without a word."""
        for s in self.skipped:
            log.warning("skipped %s: %s", s.file, s.reason)
        if self.skipped:
            log.warning("skipped %d file(s) of %s; ingested %d", len(self.skipped), self.root, len(self.files))


class ManifestError(ValueError):
    pass


def load_manifest(root: Path) -> dict:
    path = root / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from exc


def max_file_mb() -> float:
    return float(os.environ.get("QA_MAX_FILE_MB") or MAX_FILE_MB)


def read_file(path: Path) -> tuple[bytes, str]:
    """A corpus file's bytes and its text; raise ValueError saying why it is unusable."""
    data = checked_bytes(path)
    return data, decode(data)


def checked_bytes(path: Path) -> bytes:
    """A corpus file's bytes, if it is a regular file within the size limit; else ValueError saying why."""
    if path.is_symlink():
        raise ValueError("symbolic link, not followed")
    if path.is_dir():
        raise ValueError("a folder: only the files directly in the corpus folder are read")
    if not path.is_file():
        raise ValueError("not a regular file")
    size, limit = path.stat().st_size, max_file_mb()
    if size > limit * 2**20:
        over = f"over the {limit:g} MB limit for one file ($QA_MAX_FILE_MB)"
        raise ValueError(f"{size / 2**20:.1f} MB ({size:,} bytes), {over}")
    return path.read_bytes()


def read_text(path: Path) -> str:
    """Decode a file without newline translation; raise ValueError saying why it is unusable."""
    return read_file(path)[1]


def decode(data: bytes) -> str:
    """UTF-8, or UTF-16/32 with a byte-order mark (dropped). Offsets are into this text: a UTF-8 byte-order mark
    stays in it (U+FEFF at offset 0), so they are those of the file decoded as UTF-8, as the model promises."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    if encoding is None and b"\x00" in data[:8192]:
        raise ValueError("binary file (contains NUL bytes; UTF-16 without a byte-order mark is not read), not text")
    try:
        text = data.decode(encoding or "utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not {(encoding or 'utf-8').upper()} (invalid byte at offset {exc.start})") from exc
    if "\x00" in text:
        raise ValueError("binary file (contains NUL characters), not text")
    if not text.replace("\ufeff", "").strip():
        raise ValueError("empty file")
    return text


def _first_heading(text: str) -> str | None:
    """The title the text shows: its first heading, else an opening title line (corpus.structure.opening_title),
    else a short first line."""
    first_lines = [ln.strip() for ln in text.splitlines() if ln.strip()][:5]
    heading = next((ln[1:] for ln in first_lines if ln.startswith(HEADING_MARK)), None)
    heading = heading or next((m.group(1) for ln in first_lines if (m := MD_HEADING.match(ln))), None)
    heading = heading or opening_title(text.splitlines()[:50])
    return heading or (first_lines[0] if first_lines and len(first_lines[0].split()) <= 12 else None)


def infer_work(name: str, text: str, meta: Metadata) -> Work:
    """A work for a file without a manifest entry: what the file states (`meta`), else what its cleaned text
    shows; the title falls back to the file name."""
    title = meta.title or _first_heading(text)
    title = " ".join(re.sub(r"[*_`<>]|</?\w+>", "", title).split()) if title else ""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-") or "document"
    return Work(
        id=slug, file=name, title=title or Path(name).stem, authors=meta.authors, year=meta.year,
        kind=meta.kind or "document", origin=meta.container, description=meta.description,
        viewpoint="Not described: this file has no manifest entry", viewpoint_label="unlabelled", inferred=True,
    )  # fmt: skip


def _work_ranges(raw: str, works: list[Work]) -> list[tuple[int, int]]:
    starts = []
    for w in works:
        pos = raw.find(w.starts_at) if w.starts_at else 0
        if pos < 0:
            raise ManifestError(f"{w.file}: work {w.id!r} starts_at text not found: {w.starts_at!r}")
        starts.append(pos)
    ranges = []
    for i, (w, a) in enumerate(zip(works, starts, strict=True)):
        b = starts[i + 1] if i + 1 < len(works) else len(raw)
        if w.ends_at and (e := raw.find(w.ends_at, a)) >= 0:
            b = min(b, e)
        ranges.append((a, b))
    return ranges


def _file_works(name: str, entry: dict | None) -> list[Work]:
    return [Work(file=name, **w) for w in (entry or {}).get("works", [])]


def _stated(work: Work, entry: dict | None, viewpoints: dict[str, str]) -> Work:
    """The inferred work with what a file-level manifest entry states about it (`qa index add --title ...`)."""
    stated = {k: v for k, v in (entry or {}).items() if k in STATED_FIELDS}
    if not stated:
        return work
    if "viewpoint_label" in stated and "viewpoint" not in stated:
        stated["viewpoint"] = viewpoints.get(stated["viewpoint_label"], stated["viewpoint_label"])
    return replace(work, **stated, inferred=False)


def raw_text(path: Path) -> str:
    """A corpus file's raw text, the one passage offsets point into: a PDF's or DOCX's is its extracted text.
    Raises ValueError (or OSError) saying why the file gives none."""
    if path.suffix.lower() in EXTRACTORS:
        checked_bytes(path)  # the same refusals as any file (a link, a folder, too large)
        return extract(path).text
    return read_text(path)


def candidates(root: Path) -> list[tuple[Path, str | None]]:
    """The entries of a corpus folder, each with the reason it will be skipped (None: it is ingested if it
    reads). The manifest and the bundled corpus's own Python modules are not entries."""
    out = []
    for path in sorted(root.iterdir()):
        if path.name in {MANIFEST_NAME, "__pycache__"} or (path.suffix in {".py", ".pyc"} and path.is_file()):
            continue
        fmt = FORMATS.get(path.suffix.lower())
        if path.name.startswith("."):
            out.append((path, "hidden file"))
        elif path.is_symlink():
            out.append((path, "symbolic link, not followed"))
        elif fmt is None and path.is_file():
            out.append((path, f"unsupported format {path.suffix or '(none: no extension)'}"))
        else:
            out.append((path, None))  # read_file says what else is wrong (a folder, a FIFO, not text)
    return out


def corpus_files(root: Path = CORPUS_DIR) -> dict[str, str]:
    """sha256 of each file load_corpus would ingest, and of the manifest (its titles and viewpoints are in the
    index too): enough to tell whether an index is stale."""
    out = {}
    for path, reason in candidates(root):
        if reason is None:
            try:
                # A PDF or DOCX counts by its bytes even when it yields no text (load_corpus records it all the
                # same), so telling whether an index is stale never extracts text.
                data = checked_bytes(path) if path.suffix.lower() in EXTRACTORS else read_file(path)[0]
                out[path.name] = hashlib.sha256(data).hexdigest()
            except (OSError, ValueError):
                continue
    return out | manifest_checksum(root)


def manifest_checksum(root: Path) -> dict[str, str]:
    """{"manifest.toml": its sha256} (a name no document can have: .toml is not a format), or {} without one."""
    path = root / MANIFEST_NAME
    return {MANIFEST_NAME: hashlib.sha256(path.read_bytes()).hexdigest()} if path.is_file() else {}


def collection_name(root: Path, manifest: dict | None = None) -> str:
    """The manifest's [corpus] name, or the corpus directory's name when it has none."""
    manifest = load_manifest(root) if manifest is None else manifest
    return manifest.get("corpus", {}).get("name", root.resolve().name)


def load_corpus(
    root: Path = CORPUS_DIR,
    extra_files: list[Path] | None = None,
    progress: bool = False,
    trace: bool = False,
    only: set[str] | None = None,
) -> Corpus:
    """Ingest every supported file in `root` (and `extra_files`), or `only` the files so named, into works and
    passages. With `trace`, Corpus.dropped records what each rule left out (corpus.audit reports it)."""
    manifest = load_manifest(root)
    entries = {f["name"]: f for f in manifest.get("files", [])}
    found = [(p, r) for p, r in candidates(root) if only is None or p.name in only]
    found += [(p, None) for p in extra_files or [] if p.name not in {q.name for q, _ in found}]
    corpus = Corpus(
        root=root, name=collection_name(root, manifest), works={}, passages=[], files={},
        texts={}, viewpoints=dict(manifest.get("viewpoints", {})), holders=dict(manifest.get("holders", {})),
        manifest_files=manifest_checksum(root), dropped={} if trace else None,
    )  # fmt: skip
    work_texts: list[WorkText] = []
    notes: dict[str, tuple[dict[str, Note], list]] = {}
    for path, reason in tqdm(found, desc="reading", unit="file", disable=not progress or len(found) < 50):
        extracted = None
        try:
            if reason:
                raise ValueError(reason)
            if path.suffix.lower() in EXTRACTORS:
                corpus.files[path.name] = hashlib.sha256(checked_bytes(path)).hexdigest()  # see corpus_files
                extracted = extract(path)
                raw = extracted.text
            else:
                data, raw = read_file(path)
                corpus.files[path.name] = hashlib.sha256(data).hexdigest()
        except (OSError, ValueError) as exc:
            corpus.skipped.append(Skipped(path.name, str(exc)))
            continue
        corpus.texts[path.name] = raw
        if extracted and extracted.pages:
            corpus.pages[path.name] = extracted.pages
        entry = entries.get(path.name)
        work_texts += _ingest_file(corpus, path.name, raw, FORMATS[path.suffix.lower()], entry, notes, extracted)
    passages, collapsed = build_passages(work_texts, notes)
    if corpus.dropped is not None:
        _left_out(corpus.dropped, work_texts, passages)
    for p in passages:
        if p.file in corpus.pages:  # where the passage starts, and where it ends
            starts = corpus.pages[p.file]
            p.pages = (bisect.bisect_right(starts, p.start), bisect.bisect_right(starts, p.end - 1))
    corpus.passages = passages
    for p in passages:
        st = corpus.stats[p.work]
        st.passages += 1
        st.words += p.words
    for work, n in collapsed.items():
        corpus.stats[work].duplicates_collapsed = n
    return corpus


def _prepared(
    raw: str, fmt: str, extracted: Extracted | None
) -> tuple[MappedText | None, Metadata, list[str], list[str], tuple | None]:
    """Where cleaning starts (None: the raw text itself), the file's own metadata, what cleaning deletes first
    (front matter: metadata, never passages), the pattern of a byline naming the stated authors (a byline
    passage), and the notes the format's parser found with their references (an HTML page's footnotes)."""
    found = None
    if fmt == "html":
        page = html_page(raw)
        start, meta, found = page.text, page.meta, (page.notes, page.note_refs)
    elif extracted is not None:
        start, meta = extracted.mapped(), extracted.metadata
    else:
        start, meta = None, front_matter(raw) if fmt == "markdown" else None
    drop = [FRONT_MATTER.pattern] if meta and fmt == "markdown" else []
    meta = meta or Metadata()
    return start, meta, drop, [p for p in [byline(meta.authors)] if p], found


def _ingest_file(
    corpus: Corpus, name: str, raw: str, fmt: str, entry: dict | None, notes, extracted: Extracted | None = None
) -> list[WorkText]:
    start, meta, drop, bylines, found = _prepared(raw, fmt, extracted)
    trace = corpus.dropped is not None
    cleaned = clean_text(raw, drop + (entry or {}).get("drop", []), start, bylines, trace, found)
    works = _file_works(name, entry) or [_stated(infer_work(name, cleaned.text.text, meta), entry, corpus.viewpoints)]
    dropped: list[Dropped] | None = [] if trace else None
    if dropped is not None:
        if fmt == "html":
            dropped += [Dropped(rule, a, b) for rule, a, b in html_dropped(raw)]
        dropped += [Dropped(rule, int(a), int(b)) for rule, gone in cleaned.trace for a, b in _runs(gone)]
        corpus.dropped[name] = dropped
    out = []
    for work, (a, b) in zip(works, _work_ranges(raw, works), strict=True):
        if work.id in corpus.works:
            raise ManifestError(f"{name}: work id {work.id!r} is used twice")
        corpus.works[work.id] = work
        # A work's notes are cited from its own text only: "[3]" in the next work is that work's.
        inside = {k: n for k, n in cleaned.notes.items() if a <= n.start < b}
        notes[work.id] = (inside, [(k, pos) for k, pos in cleaned.note_refs if k in inside and a <= pos < b])
        mt = cleaned.text
        lo, hi = (int(x) for x in mt.pos.searchsorted([a, b]))
        paras = paragraphs(mt.slice(lo, hi), dropped)
        body = [p for p in paras if p.kind == "body"]  # numbered first: other kinds do not split the body's runs
        rest = [p for p in paras if p.kind != "body"]
        sents = drop_junk(sentences(body, 0, dropped) + sentences(rest, len(body), dropped), dropped=dropped)
        kept = sum(s.end - s.start for s in sents)
        corpus.stats[work.id] = WorkStats(chrome_dropped_chars=max(0, (b - a) - kept))
        out.append(WorkText(work.id, name, sents))
    return out


def _left_out(dropped: dict[str, list[Dropped]], work_texts: list[WorkText], passages: list[Passage]) -> None:
    """Kept sentences in no passage: a heading whose section kept no text, or whose text is a copy folded into
    another work's passage (its also_in)."""
    spans = {(p.file, a, b) for p in passages for a, b in p.sentences}
    spans |= {(s.file, s.start, s.end) for p in passages for s in p.also_in}
    covered: dict[str, list[tuple[int, int]]] = {}
    for f, a, b in spans:
        covered.setdefault(f, []).append((a, b))
    for w in work_texts:
        inside = covered.get(w.file, [])
        for s in w.sentences:
            if (w.file, s.start, s.end) not in spans and not any(a <= s.start and s.end <= b for a, b in inside):
                rule = "heading alone (its section kept no text, or only a copy of another work's)"
                rule = rule if s.heading else "sentence in no passage"
                dropped[w.file].append(Dropped(rule, s.start, s.end))


def _runs(offsets) -> list[tuple[int, int]]:
    """Sorted raw offsets as [start, end) runs."""
    out: list[tuple[int, int]] = []
    for x in np.unique(offsets).tolist():
        if out and out[-1][1] == x:
            out[-1] = (out[-1][0], x + 1)
        else:
            out.append((x, x + 1))
    return out
