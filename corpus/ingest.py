"""Ingestion: corpus files + manifest -> works and faithful passages.

Files with a manifest entry get its works; other files are ingested with what can be inferred (title from
the first heading or the file name). Files that are empty, binary, not text (UTF-8, or UTF-16/UTF-8 with a
byte-order mark), over MAX_FILE_MB, of an unknown format, symbolic links or folders are reported and skipped;
they never stop the others.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from corpus.clean import clean_text
from corpus.html import html_to_mapped
from corpus.model import Note, Passage, Work
from corpus.passages import WorkText, build_passages
from corpus.structure import MD_HEADING, drop_junk, paragraphs, sentences

log = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).resolve().parent
MANIFEST_NAME = "manifest.toml"
FORMATS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
           ".htm": "html"}  # fmt: skip
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
    texts: dict[str, str]  # file name -> raw text
    viewpoints: dict[str, str]  # label -> description
    holders: dict[str, str]  # known holder -> viewpoint label
    skipped: list[Skipped] = field(default_factory=list)
    stats: dict[str, WorkStats] = field(default_factory=dict)
    manifest_files: dict[str, str] = field(default_factory=dict)  # {"manifest.toml": sha256}, if there is one

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
    data = path.read_bytes()
    return data, decode(data)


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


def infer_work(name: str, raw: str, fmt: str, html_title: str | None) -> Work:
    title = html_title
    if title is None:
        first_lines = [ln.strip() for ln in raw.removeprefix("\ufeff").splitlines() if ln.strip()][:5]
        md = next((m.group(1) for ln in first_lines if (m := MD_HEADING.match(ln))), None)
        title = md or (first_lines[0] if first_lines and len(first_lines[0].split()) <= 12 else None)
    title = re.sub(r"[*_`<>]|</?\w+>", "", title).strip() if title else Path(name).stem
    slug = re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-") or "document"
    return Work(
        id=slug, file=name, title=title, authors=["Unknown"], year=None, kind="document",
        origin=f"added file {name} (no manifest entry; title inferred)",
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
                out[path.name] = hashlib.sha256(read_file(path)[0]).hexdigest()
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


def load_corpus(root: Path = CORPUS_DIR, extra_files: list[Path] | None = None) -> Corpus:
    """Ingest every supported file in `root` (and `extra_files`) into works and passages."""
    manifest = load_manifest(root)
    entries = {f["name"]: f for f in manifest.get("files", [])}
    found = candidates(root)
    found += [(p, None) for p in extra_files or [] if p.name not in {q.name for q, _ in found}]
    corpus = Corpus(
        root=root, name=collection_name(root, manifest), works={}, passages=[], files={},
        texts={}, viewpoints=dict(manifest.get("viewpoints", {})), holders=dict(manifest.get("holders", {})),
        manifest_files=manifest_checksum(root),
    )  # fmt: skip
    work_texts: list[WorkText] = []
    notes: dict[str, tuple[dict[str, Note], list]] = {}
    for path, reason in found:
        try:
            if reason:
                raise ValueError(reason)
            data, raw = read_file(path)
        except (OSError, ValueError) as exc:
            corpus.skipped.append(Skipped(path.name, str(exc)))
            continue
        corpus.files[path.name] = hashlib.sha256(data).hexdigest()
        corpus.texts[path.name] = raw
        entry = entries.get(path.name)
        work_texts += _ingest_file(corpus, path.name, raw, FORMATS[path.suffix.lower()], entry, notes)
    passages, collapsed = build_passages(work_texts, notes)
    corpus.passages = passages
    for p in passages:
        st = corpus.stats[p.work]
        st.passages += 1
        st.words += p.words
    for work, n in collapsed.items():
        corpus.stats[work].duplicates_collapsed = n
    return corpus


def _ingest_file(corpus: Corpus, name: str, raw: str, fmt: str, entry: dict | None, notes) -> list[WorkText]:
    start, html_title = html_to_mapped(raw) if fmt == "html" else (None, None)
    works = _file_works(name, entry) or [infer_work(name, raw, fmt, html_title)]
    cleaned = clean_text(raw, (entry or {}).get("drop"), start)
    notes[name] = (cleaned.notes, cleaned.note_refs)
    out = []
    for work, (a, b) in zip(works, _work_ranges(raw, works), strict=True):
        if work.id in corpus.works:
            raise ManifestError(f"{name}: work id {work.id!r} is used twice")
        corpus.works[work.id] = work
        mt = cleaned.text
        lo, hi = (int(x) for x in mt.pos.searchsorted([a, b]))
        sents = drop_junk(sentences(paragraphs(mt.slice(lo, hi))))
        kept = sum(s.end - s.start for s in sents)
        corpus.stats[work.id] = WorkStats(chrome_dropped_chars=max(0, (b - a) - kept))
        out.append(WorkText(work.id, name, sents))
    return out
