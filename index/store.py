"""Load a built index, refusing anything partial, corrupted, or built from another corpus."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from corpus.model import Passage, Work
from index import layout
from index.encoder import Encoder, load_encoder, load_onnx_encoder, resolve, wanted_backend

log = logging.getLogger(__name__)

REBUILD_HINT = "Rebuild it with `qa index build`."
_MANIFEST_KEYS = ("model", "corpus_files", "passage_count", "dense", "lexical", "extra", "files")
QUERY_CACHE_SIZE = 1024  # query vectors kept (LRU); $QA_QUERY_CACHE overrides, 0 disables


class IndexLoadError(Exception):
    """The index cannot be used; the message says why and how to rebuild."""

    def __init__(self, problem: str, path: Path | None = None) -> None:
        where = f" (index at {path})" if path else ""
        super().__init__(f"{problem}{where}. {REBUILD_HINT}")


class StaleIndexError(IndexLoadError):
    """The index is intact but was built from different corpus files."""


class SearchIndex:
    """A loaded index. Passage positions (0..n-1) are shared by dense and lexical search results."""

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
    def load(cls, path: Path, expected_files: dict[str, str] | None = None, mmap: bool = True) -> SearchIndex:
        """Load and validate the index at `path`.

        `expected_files` (corpus file name -> sha256) are the current corpus checksums; if they
        differ from the ones the index was built from, StaleIndexError is raised.
        """
        path = Path(path).absolute()
        started = time.perf_counter()
        _recover_quietly(path)
        # A rebuild may swap the directory while we read it; the manifest changes if so.
        for attempt in range(3):
            before = _manifest_bytes(path)
            try:
                index = cls._load_once(path, before, expected_files, mmap)
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
    def _load_once(cls, path: Path, raw: bytes, expected: dict[str, str] | None, mmap: bool) -> SearchIndex:
        manifest = _parse_manifest(raw, path)
        if expected is not None:
            _check_fresh(manifest["corpus_files"], expected, path)
        _check_hashes(path, manifest["files"])
        try:
            passages = [Passage.from_dict(json.loads(line)) for line in _lines(path / layout.PASSAGES_FILE)]
            works_json = json.loads((path / layout.WORKS_FILE).read_text(encoding="utf-8"))
            works = {d["id"]: Work(**d) for d in works_json}
        except (ValueError, KeyError, TypeError) as e:
            raise IndexLoadError(f"unreadable passage store: {e}", path) from e
        index = cls(path, manifest, passages, works)
        for key in manifest["extra"]:
            index._extra[key] = json.loads((path / f"{key}.json").read_text(encoding="utf-8"))
        for key in manifest.get("arrays", []):
            # Opened now (mapped, not copied), so a later rebuild's directory swap cannot mix old and new data.
            # A plain ndarray view of the map: np.memmap's Python-level __array_finalize__ runs on every
            # slice, which cost more than the arithmetic on the ask path.
            array = np.load(path / f"{key}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
            index._arrays[key] = array.view(np.ndarray)
        index._dense = _read_faiss(path / manifest["dense"]["file"], manifest, mmap)
        index._onnx = _read_onnx(path, manifest)
        index._bm25 = _read_bm25(path / manifest["lexical"]["dir"], mmap)
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
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        return self._dense.search(q, k)

    def lexical_search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 over stemmed tokens without stopwords. Returns 1-D (scores, positions), best first, > 0."""
        tokens = layout.bm25_tokenize([query], return_ids=False)[0]
        k = min(k, len(self.passages))
        if k <= 0 or not any(t in self._bm25.vocab_dict for t in tokens):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
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
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise IndexLoadError(f"{layout.MANIFEST_FILE} lacks {', '.join(missing)}", path)
    return manifest


def _check_fresh(built: dict[str, str], current: dict[str, str], path: Path) -> None:
    if built == current:
        return
    changed = sorted(f for f in built.keys() & current.keys() if built[f] != current[f])
    added, removed = sorted(current.keys() - built.keys()), sorted(built.keys() - current.keys())
    diffs = {"changed": changed, "added": added, "removed": removed}
    parts = [f"{label}: {', '.join(names)}" for label, names in diffs.items() if names]
    raise StaleIndexError(f"the index was built from a different corpus ({'; '.join(parts)})", path)


def _check_hashes(path: Path, files: dict[str, str]) -> None:
    for rel, digest in files.items():
        file = path / rel
        if not file.is_file():
            raise IndexLoadError(f"index file {rel} is missing", path)
        if layout.sha256_file(file) != digest:
            raise IndexLoadError(f"index file {rel} is corrupted or was modified (checksum mismatch)", path)


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
