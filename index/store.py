"""Load a built index, refusing anything partial, corrupted, or built from another corpus."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from corpus.mapped import MappedText
from corpus.model import Passage, Work
from index import layout
from index import manifest as manifest_schema
from index.encoder import Encoder, load_encoder, load_onnx_encoder, resolve, wanted_backend

log = logging.getLogger(__name__)

REBUILD_HINT = "Rebuild it with `qa index build`."
# Below this size (the demo index maps 2.3 MB) the arrays are read into memory: a file truncated under a running
# server then cannot fault it (SIGBUS), and the copy costs little RAM. Above it, mapping saves RAM and start-up,
# shared by worker processes; see SearchIndex._check_mapped for what remains of the risk.
MMAP_MIN_BYTES = 256 << 20
_MAPPED_SUFFIXES = (".npy", ".faiss")  # what numpy, bm25s and faiss map
QUERY_CACHE_SIZE = 1024  # query vectors kept (LRU); $QA_QUERY_CACHE overrides, 0 disables


class IndexLoadError(Exception):
    """The index cannot be used; the message says why and how to rebuild."""

    def __init__(self, problem: str, path: Path | None = None) -> None:
        where = f" (index at {path})" if path else ""
        super().__init__(f"{problem}{where}. {REBUILD_HINT}")


class StoreUnavailable(Exception):
    """The store cannot be reached or read right now (a database that went away); the message says which and
    why. Not the index's fault: nothing to rebuild, retry once the store is back."""


class StaleIndexError(IndexLoadError):
    """The index is intact but was built from different corpus files."""


class SearchIndex:
    """A loaded index. Passage positions (0..n-1) are shared by dense and lexical search results.

    What the engine uses of it is the store's surface, which the PostgreSQL store (index/pg.py PgSearchIndex)
    shares: passages, works, by_id, position, len(), manifest (model, created, corpus_files), extra(key),
    array(key), passage_vectors(positions), encode_query, dense_search, lexical_search."""

    def __init__(self, path: Path, manifest: dict, passages: list[Passage], works: dict[str, Work]) -> None:
        self.path = path
        self.manifest = manifest
        self.passages = passages
        self.by_id: dict[str, Passage] = {p.id: p for p in passages}
        self.position: dict[str, int] = {p.id: i for i, p in enumerate(passages)}
        self.works = works
        self.dim: int = manifest["model"]["dim"]
        self._extra: dict[str, object] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._mapped: dict[str, int] = {}  # memory-mapped file -> its size when loaded
        self._mapped_files: list = []  # open handles of the mapped files, to fstat
        self._dense = None
        self._bm25 = None
        self._encoder: Encoder | None = None
        self._encoder_lock = threading.Lock()
        self._onnx: tuple[bytes, str] | None = None  # the exported query encoder, read with the index
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = int(os.environ.get("QA_QUERY_CACHE", QUERY_CACHE_SIZE))
        self._query_cache_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.passages)

    @classmethod
    def load(
        cls,
        path: Path,
        expected_files: dict[str, str] | None = None,
        mmap: bool = True,
        corpus_dir: Path | None = None,
    ) -> SearchIndex:
        """Load and validate the index at `path`.

        `expected_files` (corpus file name -> sha256) are the current corpus checksums; if they
        differ from the ones the index was built from, StaleIndexError is raised.
        `corpus_dir`, if given, is the corpus the passages quote: each passage is checked against it.
        `mmap` maps the large arrays instead of reading them, but only for an index of MMAP_MIN_BYTES or more.
        """
        path = Path(path).absolute()
        started = time.perf_counter()
        _recover_quietly(path)
        # A rebuild may swap the directory while we read it; the manifest changes if so.
        for attempt in range(3):
            before = _manifest_bytes(path)
            try:
                index = cls._load_once(path, before, expected_files, mmap, corpus_dir)
            except IndexLoadError:
                # Files of the next index hashed against this manifest look corrupted: retry if it was a swap.
                if attempt < 2 and _manifest_bytes_or_none(path) != before:
                    time.sleep(0.05)
                    continue
                raise
            if _manifest_bytes(path) == before:
                elapsed = time.perf_counter() - started
                log.info("loaded index %s (%d passages) in %.2fs", path, len(index), elapsed)
                return index
        raise IndexLoadError("the index kept changing while loading (is a build running?)", path)

    @classmethod
    def _load_once(
        cls, path: Path, raw: bytes, expected: dict[str, str] | None, mmap: bool, corpus_dir: Path | None
    ) -> SearchIndex:
        manifest = _parse_manifest(raw, path)
        if expected is not None:
            _check_fresh(manifest["corpus_files"], expected, path)
        _check_listing(path, manifest)
        sizes = _check_hashes(path, manifest["files"])
        mmap = mmap and _mappable_bytes(sizes) >= MMAP_MIN_BYTES
        try:
            passages = [Passage.from_dict(json.loads(line)) for line in _lines(path / layout.PASSAGES_FILE)]
            works_json = json.loads((path / layout.WORKS_FILE).read_text(encoding="utf-8"))
            works = {d["id"]: Work(**d) for d in works_json}
        except (ValueError, KeyError, TypeError) as e:
            raise IndexLoadError(f"unreadable passage store: {e}", path) from e
        if corpus_dir is not None:
            check_verbatim(passages, corpus_dir, path)
        index = cls(path, manifest, passages, works)
        for key in manifest["extra"]:
            try:
                index._extra[key] = json.loads((path / f"{key}.json").read_text(encoding="utf-8"))
            except ValueError as e:
                raise IndexLoadError(f"unreadable {key}.json: {e}", path) from e
        for key in manifest["arrays"]:
            # Opened now (mapped, not copied), so a later rebuild's directory swap cannot mix old and new data.
            # A plain ndarray view of the map: np.memmap's Python-level __array_finalize__ runs on every
            # slice, which cost more than the arithmetic on the ask path.
            try:
                array = np.load(path / f"{key}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
            except ValueError as e:
                raise IndexLoadError(f"unreadable {key}.npy: {e}", path) from e
            index._arrays[key] = array.view(np.ndarray)
        index._dense = _read_faiss(path / manifest["dense"]["file"], manifest, mmap)
        index._onnx = _read_onnx(path, manifest)
        index._bm25 = _read_bm25(path / manifest["lexical"]["dir"], mmap)
        index._watch_mapped({rel: n for rel, n in sizes.items() if mmap and rel.endswith(_MAPPED_SUFFIXES)})
        index._check_sizes()
        return index

    def _check_sizes(self) -> None:
        n, dense = self.manifest["passage_count"], self._dense
        if dense.d != self.dim:
            raise IndexLoadError(f"dense index has dimension {dense.d}, model {self.dim}", self.path)
        counts = {
            "manifest": n,
            "passages.jsonl": len(self.passages),
            "dense index": dense.ntotal,
            "bm25 index": int(self._bm25.scores["num_docs"]),
        }
        if len(set(counts.values())) != 1:
            raise IndexLoadError(f"passage counts disagree: {counts}", self.path)

    def _watch_mapped(self, sizes: dict[str, int]) -> None:
        # Handles, not paths: a rebuild swaps in a new directory under the same path, and deletes the old one
        # (which stays mapped, harmlessly); only a truncation of the very file we mapped can fault us.
        self._mapped = sizes
        self._mapped_files = [open(self.path / rel, "rb") for rel in sizes]  # noqa: SIM115 (kept open)

    def _check_mapped(self) -> None:
        """Refuse to read a memory-mapped file that shrank since it was loaded: touching its lost pages would
        kill the process with SIGBUS. Writers never truncate in place (builds go to a new directory that is
        swapped in), so this guards against outside damage; a truncation between this check and the read
        can still fault the process, which is why indexes below MMAP_MIN_BYTES are not mapped at all."""
        for f, (rel, size) in zip(self._mapped_files, self._mapped.items(), strict=True):
            now = os.fstat(f.fileno()).st_size
            if now != size:
                problem = f"index file {rel} changed size under the running server ({size} -> {now} bytes)"
                raise IndexLoadError(problem, self.path)

    def extra(self, key: str):
        """A JSON blob passed to build_index(extra=...), or None if the index has none under `key`."""
        return self._extra.get(key)

    def array(self, key: str) -> np.ndarray | None:
        """A numpy array passed to build_index(arrays=...) (read-only when memory-mapped), or None."""
        return self._arrays.get(key)

    def passage_vectors(self, positions) -> np.ndarray:
        """The stored dense vectors of the passages at `positions`, shape (len(positions), dim), in one call
        (every index type keeps exact vectors: flat, HNSW-flat, and IVF-PQ's re-ranking store)."""
        ids = np.asarray(positions, dtype=np.int64)
        self._check_mapped()
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self._dense.reconstruct_batch(ids)

    @property
    def encoder(self) -> Encoder:
        """The query encoder, loaded on first use (loading the model takes seconds).

        The ONNX export the index carries (manifest "encoder") if onnxruntime can run it, else torch.
        """
        with self._encoder_lock:
            if self._encoder is None:
                name, _ = resolve(self.manifest["model"]["name"])
                encoder = self._load_onnx(name) if self._onnx else None
                encoder = encoder or load_encoder(name)
                if encoder.dim != self.dim:
                    problem = f"model {name} has dimension {encoder.dim}, index {self.dim}"
                    raise IndexLoadError(problem, self.path)
                self._encoder, self._onnx = encoder, None
            return self._encoder

    @property
    def encoder_backend(self) -> str:
        return getattr(self.encoder, "backend", "torch")

    def _load_onnx(self, name: str) -> Encoder | None:
        model, tokenizer = self._onnx
        try:
            return load_onnx_encoder(name, model, tokenizer, self.manifest["encoder"])
        except Exception as exc:  # onnxruntime missing or unable to run the graph: torch still can
            log.warning("cannot use the index's ONNX encoder (%s); encoding queries with torch", exc)
            return None

    def encode_query(self, question: str) -> np.ndarray:
        """One normalised float32 query vector, shape (dim,), read-only (recent questions are cached)."""
        if self._query_cache_size <= 0:
            return self.encoder.encode_queries([question])[0]
        with self._query_cache_lock:
            vec = self._query_cache.get(question)
            if vec is not None:
                self._query_cache.move_to_end(question)
                return vec
        vec = self.encoder.encode_queries([question])[0]
        vec.setflags(write=False)
        with self._query_cache_lock:
            self._query_cache[question] = vec
            while len(self._query_cache) > self._query_cache_size:
                self._query_cache.popitem(last=False)
        return vec

    def dense_search(self, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product (cosine) search. Returns (scores, positions), each shape (n_queries, k').

        k' = min(k, passages). HNSW may pad a row with position -1 (score -inf): skip those.
        """
        q = np.ascontiguousarray(np.atleast_2d(qvecs), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have dimension {q.shape[1]}, index {self.dim}")
        k = min(k, self._dense.ntotal)
        self._check_mapped()
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        return self._dense.search(q, k)

    def lexical_search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 over stemmed tokens without stopwords. Returns 1-D (scores, positions), best first, > 0."""
        tokens = layout.bm25_tokenize([query], return_ids=False)[0]
        k = min(k, len(self.passages))
        if k <= 0 or not any(t in self._bm25.vocab_dict for t in tokens):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        self._check_mapped()
        docs, scores = self._bm25.retrieve([tokens], k=k, show_progress=False, n_threads=0)
        keep = scores[0] > 0
        return scores[0][keep].astype(np.float32), docs[0][keep].astype(np.int64)


def _recover_quietly(path: Path) -> None:
    """Restore an index a crashed build left mid-swap; harmless no-op on a read-only deployment."""
    if path.exists() and not any(layout.siblings(path, kind) for kind in ("old", "tmp", "staging")):
        return
    try:
        layout.recover(path)
    except OSError as e:
        log.warning("could not tidy leftovers next to %s: %s", path, e)


def _manifest_bytes(path: Path) -> bytes:
    try:
        return (path / layout.MANIFEST_FILE).read_bytes()
    except FileNotFoundError:
        what = "no index directory" if not path.exists() else f"no {layout.MANIFEST_FILE} (incomplete build?)"
        raise IndexLoadError(what, path) from None


def _manifest_bytes_or_none(path: Path) -> bytes | None:
    try:
        return (path / layout.MANIFEST_FILE).read_bytes()
    except OSError:
        return None


def _parse_manifest(raw: bytes, path: Path) -> dict:
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise IndexLoadError(f"{layout.MANIFEST_FILE} is not valid JSON: {e}", path) from e
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != layout.FORMAT_VERSION:
        problem = f"index format version {version!r}, this code reads {layout.FORMAT_VERSION}"
        raise IndexLoadError(problem, path)
    if why := manifest_schema.problem(manifest):
        raise IndexLoadError(f"{layout.MANIFEST_FILE} cannot be trusted: {why}", path)
    return manifest


def _check_fresh(built: dict[str, str], current: dict[str, str], path: Path) -> None:
    if built == current:
        return
    changed = sorted(f for f in built.keys() & current.keys() if built[f] != current[f])
    added, removed = sorted(current.keys() - built.keys()), sorted(built.keys() - current.keys())
    diffs = {"changed": changed, "added": added, "removed": removed}
    parts = [f"{label}: {', '.join(names)}" for label, names in diffs.items() if names]
    raise StaleIndexError(f"the index was built from a different corpus ({'; '.join(parts)})", path)


def _check_listing(path: Path, manifest: dict) -> None:
    """The manifest lists every file of the index, at least those the loader reads: an unlisted file would be
    read (or ignored) without a checksum."""
    listed = set(manifest["files"])
    if missing := sorted(manifest_schema.required_files(manifest) - listed):
        raise IndexLoadError(f"{layout.MANIFEST_FILE} does not list {', '.join(missing)}", path)
    present = {p.relative_to(path).as_posix() for p in layout.index_files(path)}
    if unlisted := sorted(present - listed):
        raise IndexLoadError(f"files not listed in {layout.MANIFEST_FILE}: {', '.join(unlisted)}", path)


def _check_hashes(path: Path, files: dict[str, str]) -> dict[str, int]:
    """Check every listed file's sha256; returns their sizes."""
    sizes = {}
    for rel, digest in files.items():
        file = path / rel
        if not layout.inside(path, rel):
            raise IndexLoadError(f"index file {rel} is a link leading out of the index", path)
        if not file.is_file():
            raise IndexLoadError(f"index file {rel} is missing", path)
        if layout.sha256_file(file) != digest:
            raise IndexLoadError(f"index file {rel} is corrupted or was modified (checksum mismatch)", path)
        sizes[rel] = file.stat().st_size
    return sizes


def _mappable_bytes(sizes: dict[str, int]) -> int:
    return sum(n for rel, n in sizes.items() if rel.endswith(_MAPPED_SUFFIXES))


def check_verbatim(passages: list[Passage], corpus_dir: Path, path: Path) -> None:
    """Refuse the index unless every passage's words appear, in order, in raw[start:end] of the file it cites
    (of an HTML file: in the visible text of raw[start:end], as ingestion read it).

    Only the corpus can vouch for a quotation: the manifest's checksum and the files' checksums cannot, since
    whoever edits a passage's text can recompute them too. (The corpus files themselves are compared with the
    checksums the index recorded: that is staleness, checked first.) Words deleted from a passage are not
    caught: cleaning deletes words too (citation markers, tags, junk sentences between kept ones).
    """
    sources: dict[str, str | MappedText | None] = {}
    for p in passages:
        if p.file not in sources:
            sources[p.file] = _corpus_text(corpus_dir, p.file)
        if why := _not_verbatim(p, sources[p.file]):
            raise IndexLoadError(f"passage {p.id} does not quote {p.file} verbatim: {why}", path)


WORD = re.compile(r"\w+")


def _corpus_text(corpus_dir: Path, name: str) -> str | MappedText | None:
    """The file's text (None if the corpus has no readable file of that name); an HTML file's visible text."""
    from corpus.html import html_to_mapped
    from corpus.ingest import FORMATS, raw_text

    if not isinstance(name, str) or not manifest_schema.NAME.fullmatch(name):
        return None  # not a plain file name of the corpus directory
    try:
        raw = raw_text(corpus_dir / name)  # a PDF's or DOCX's: its extracted text
    except (OSError, ValueError):
        return None
    return html_to_mapped(raw)[0] if FORMATS.get(Path(name).suffix.lower()) == "html" else raw


def _not_verbatim(p: Passage, source: str | MappedText | None) -> str | None:
    if source is None:
        return "the corpus has no readable file of that name"
    size = source.raw_len if isinstance(source, MappedText) else len(source)
    if not (type(p.start) is int and type(p.end) is int and 0 <= p.start <= p.end <= size):
        return f"its offsets {p.start!r}-{p.end!r} are not inside the file ({size} characters)"
    if not isinstance(p.text, str):
        return "its text is not a string"
    if isinstance(source, MappedText):  # tags split words ("<b>stro</b>ng"): compare with what a reader sees
        lo, hi = (int(x) for x in np.searchsorted(source.pos, [p.start, p.end]))
        span = source.text[lo:hi]
    else:
        span = source[p.start : p.end]
    remaining = iter(w.lower() for w in WORD.findall(span))
    for word in WORD.findall(p.text):
        if word.lower() not in remaining:  # consumes the raw words up to the match: order counts
            return f"{word!r} is not in characters {p.start}-{p.end} (in that order)"
    return None


def _lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line for line in f if line.strip()]


def _read_faiss(file: Path, manifest: dict, mmap: bool):
    import faiss

    flag = getattr(faiss, "IO_FLAG_MMAP_IFC", None) if mmap else None
    try:
        try:
            # Maps the vectors instead of copying them into RAM; older faiss lacks the flag.
            dense = faiss.read_index(str(file), flag) if flag is not None else faiss.read_index(str(file))
        except RuntimeError:
            dense = faiss.read_index(str(file))
    except RuntimeError as e:
        raise IndexLoadError(f"cannot read {file.name}: {str(e).splitlines()[0]}", file.parent) from e
    hnsw = manifest["dense"].get("hnsw")
    if hnsw and hasattr(dense, "hnsw"):
        dense.hnsw.efSearch = hnsw["ef_search"]
    ivfpq = manifest["dense"].get("ivfpq")
    if ivfpq and hasattr(dense, "k_factor"):
        dense.k_factor = ivfpq["k_factor"]
        faiss.extract_index_ivf(dense).nprobe = ivfpq["nprobe"]
    return dense


def _read_onnx(path: Path, manifest: dict) -> tuple[bytes, str] | None:
    """The index's exported query encoder (bytes, so a later directory swap cannot mix indexes), if used."""
    info = manifest.get("encoder") or {}
    if wanted_backend(info.get("backend")) == "torch" or not info.get("file"):
        return None
    try:
        return (path / info["file"]).read_bytes(), (path / info["tokenizer"]).read_text(encoding="utf-8")
    except (OSError, KeyError, UnicodeDecodeError) as exc:
        log.warning("cannot read the index's ONNX encoder (%s); queries will be encoded with torch", exc)
        return None


def _read_bm25(directory: Path, mmap: bool):
    import bm25s

    try:
        bm25 = bm25s.BM25.load(str(directory), mmap=mmap, load_corpus=False, show_progress=False)
    except (OSError, ValueError, KeyError) as e:
        raise IndexLoadError(f"cannot read the bm25 index: {e}", directory.parent) from e
    # Plain views of the mapped score arrays (see SearchIndex._load_once on np.memmap's per-slice cost).
    bm25.scores = {k: v.view(np.ndarray) if isinstance(v, np.memmap) else v for k, v in bm25.scores.items()}
    return bm25
