"""Build the search index: dense vectors (FAISS), a BM25 index (bm25s), the passage store, a manifest.

Everything goes into one directory that replaces the previous index atomically (see layout.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from corpus.model import Passage, Work
from index import layout
from index import manifest as manifest_schema
from index.encoder import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_MODEL,
    copy_cached_export,
    export_key,
    export_onnx,
    load_encoder,
    resolve,
)
from index.pg import is_database

log = logging.getLogger(__name__)

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 128
IVFPQ_THRESHOLD = 500_000  # from here on, IVF-PQ codes + exact re-ranking instead of HNSW over full vectors
# pgvector's HNSW has no IVF-PQ to switch to: from IVFPQ_THRESHOLD on, the database store searches its graph
# wider. At 1M synthetic passages (bench/pg_scale.py, 2026-11-30) ef_search 128 / 256 / 512 gave recall@10
# 0.85 / 0.91 / 0.955 at a similar p50 (14-18 ms); 128 gives 0.994 at 100k.
PG_LARGE_EF_SEARCH = 512
PQ_M, PQ_NBITS = 48, 8  # 48 one-byte codes a vector (8 dimensions each for 384-d)
# Measured at 1M synthetic passages (bench/README.md): k_factor 16 caps recall@10 at 0.94, 32 gives 0.99.
DEFAULT_NPROBE = 64
DEFAULT_K_FACTOR = 32
IVFPQ_MIN = 4 * 2**PQ_NBITS  # PQ codebooks need points to train on; fewer passages get an exact index
_EXTRA_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LIBRARIES = {"faiss-cpu": "faiss", "bm25s": "bm25s", "sentence-transformers": "sentence_transformers"}
_LIBRARIES |= {"torch": "torch", "PyStemmer": "Stemmer", "numpy": "numpy"}


def build_index(
    passages: list[Passage],
    works: list[Work],
    corpus_files: dict[str, str],
    out_dir: Path,
    model: str = DEFAULT_MODEL,
    ann_threshold: int = 50_000,
    extra: dict | None = None,
    *,
    arrays: dict[str, np.ndarray] | None = None,
    section_prefix: bool = True,
    ef_search: int = DEFAULT_EF_SEARCH,
    show_progress: bool = True,
    encoder_backend: str | None = None,
    dense_type: str | None = None,
    passage_vectors: np.ndarray | None = None,
    reuse_from: Path | None = None,
) -> Path:
    """Build the index for `passages` into `out_dir`, replacing any previous index only on success.

    `corpus_files` (file name -> sha256) is recorded so loading can tell when the corpus changed.
    `extra` maps a key to a JSON-serialisable value, stored as `<key>.json` (read with SearchIndex.extra);
    `arrays` maps a key to a numeric numpy array, stored as `<key>.npy` (read with SearchIndex.array).
    `encoder_backend` ("torch", "onnx", "onnx-int8"; default $QA_ENCODER_BACKEND or DEFAULT_BACKEND) is how
    queries will be encoded: ONNX backends export the model into the index (manifest "encoder"); if the
    export fails the index records "torch" and the build goes on.
    `dense_type` ("flat_ip", "hnsw_flat", "ivfpq_refine") overrides the choice by size (ann_threshold and
    IVFPQ_THRESHOLD).
    `passage_vectors`, if given, are the passages' embeddings already computed with `model` (normalised,
    one row per passage, from embedding_text(p, section_prefix)); otherwise they are encoded here. With them,
    the model is loaded only if the query encoder's ONNX export is neither cached nor in the previous index
    (`reuse_from`, default `out_dir`).
    """
    extra, arrays = extra or {}, arrays or {}
    _check_inputs(passages, extra, arrays, passage_vectors)
    if is_database(out_dir):
        vectors = _passage_vectors(passages, passage_vectors, model, section_prefix, show_progress)
        options = dict(model=model, section_prefix=section_prefix, ann_threshold=ann_threshold, ef_search=ef_search)
        options |= dict(dense_type=dense_type, encoder_backend=encoder_backend, reuse_from=reuse_from)
        return _build_in_database(out_dir, passages, works, corpus_files, vectors, extra, arrays, options)
    out_dir = Path(out_dir).absolute()
    layout.recover(out_dir)
    tmp = layout.sibling(out_dir, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        passage_vectors = _passage_vectors(passages, passage_vectors, model, section_prefix, show_progress)
        dense = _write_dense(tmp, passage_vectors, ann_threshold, ef_search, dense_type)
        manifest = {
            "format_version": layout.FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": _model_info(model, passage_vectors.shape[1], section_prefix),
            "corpus_files": dict(sorted(corpus_files.items())),
            "passage_count": len(passages),
            "work_count": len(works),
            "dense": dense,
            "lexical": _write_bm25(tmp, passages),
            "extra": sorted(extra),
            "arrays": sorted(arrays),
            "libraries": _library_versions(),
            "encoder": _write_encoder(tmp, model, encoder_backend, Path(reuse_from or out_dir)),
        }
        _write_store(tmp, passages, works, extra, arrays)
        _finish(tmp, manifest)
        layout.swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built index %s: %d passages, %s", out_dir, len(passages), manifest["dense"]["type"])
    return out_dir


def _passage_vectors(passages, vectors, model: str, section_prefix: bool, show_progress: bool) -> np.ndarray:
    if vectors is not None:
        return vectors
    texts = [embedding_text(p, section_prefix) for p in passages]
    return load_encoder(model).encode_passages(texts, show_progress=show_progress)


def _build_in_database(url: str, passages, works, corpus_files, vectors, extra, arrays, options: dict) -> str:
    """The same index in PostgreSQL (index/pg.py): a new collection version, made current in one transaction.
    Exact search below ann_threshold, HNSW (pgvector, the FAISS graph's M and ef_construction) above."""
    from index.pg import build_pg_index

    kind = options["dense_type"] or dense_type_for(len(passages), options["ann_threshold"])
    ef_search = options["ef_search"]
    if len(passages) >= IVFPQ_THRESHOLD:
        ef_search = max(ef_search, PG_LARGE_EF_SEARCH)
    hnsw = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": ef_search}
    dense = {"type": "exact" if kind == "flat_ip" else "pgvector_hnsw", "metric": "inner_product"}
    dense |= {"ann_threshold": options["ann_threshold"], "hnsw": None if kind == "flat_ip" else hnsw}
    model, reuse_from = options["model"], options["reuse_from"]
    with tempfile.TemporaryDirectory(prefix="qa-encoder-") as tmp:
        previous = Path(reuse_from) if reuse_from and not is_database(reuse_from) else Path(tmp) / "none"
        encoder = _write_encoder(Path(tmp), model, options["encoder_backend"], previous)
        info = _model_info(model, vectors.shape[1], options["section_prefix"])
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        written = (encoder, Path(tmp), _library_versions())
        build_pg_index(url, passages, works, corpus_files, vectors, info, extra, arrays, dense, *written)
    return url


def _check_inputs(passages: list[Passage], extra: dict, arrays: dict, vectors: np.ndarray | None) -> None:
    if not passages:
        raise ValueError("cannot build an index without passages")
    ids = [p.id for p in passages]
    if len(set(ids)) != len(ids):
        raise ValueError("passage ids must be unique")
    for key in [*extra, *arrays]:
        if not _EXTRA_KEY.fullmatch(key) or f"{key}.json" in layout.RESERVED:
            raise ValueError(f"invalid extra key {key!r}: use letters, digits, '_', '-', '.'")
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            raise ValueError(f"array {key!r} must be a numpy array of numbers")
    if vectors is not None and (vectors.ndim != 2 or len(vectors) != len(passages)):
        raise ValueError(f"passage_vectors must have one row per passage, got shape {vectors.shape}")


def _model_info(model: str, dim: int, section_prefix: bool) -> dict:
    name, spec = resolve(model)
    return {
        "name": name,
        "dim": dim,
        "query_prefix": spec.query_prefix,
        "passage_prefix": spec.passage_prefix,
        "section_prefix": section_prefix,
    }


def embedding_text(p: Passage, section_prefix: bool = True) -> str:
    """Text the dense model sees: a section title carries meaning the passage alone may lack."""
    text = layout.clean_text(p.text)
    return f"{layout.clean_text(p.section)}\n{text}" if section_prefix and p.section else text


def _write_dense(root: Path, vecs: np.ndarray, ann_threshold: int, ef_search: int, dense_type: str | None) -> dict:
    import faiss

    index, info = make_dense(vecs, ann_threshold, ef_search, dense_type)
    faiss.write_index(index, str(root / layout.DENSE_FILE))
    return info


def dense_type_for(n: int, ann_threshold: int = 50_000, ivfpq_threshold: int = IVFPQ_THRESHOLD) -> str:
    """Exact below ann_threshold; HNSW up to ivfpq_threshold; IVF-PQ with exact re-ranking above."""
    if n < ann_threshold:
        return "flat_ip"
    return "hnsw_flat" if n < ivfpq_threshold else "ivfpq_refine"


def ivf_lists(n: int) -> int:
    """About 2 sqrt(n) inverted lists, a power of two: 1M vectors -> 2048 lists of ~500."""
    return int(min(65536, max(16, 2 ** round(np.log2(max(2 * np.sqrt(n), 1))))))


def make_dense(
    vecs: np.ndarray,
    ann_threshold: int = 50_000,
    ef_search: int = DEFAULT_EF_SEARCH,
    dense_type: str | None = None,
    *,
    nprobe: int = DEFAULT_NPROBE,
    k_factor: int = DEFAULT_K_FACTOR,
    train_size: int | None = None,
    seed: int = 1234,
):
    """The FAISS index for normalised float32 `vecs` and its manifest entry ("dense")."""
    import faiss

    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    n, dim = vecs.shape
    kind = dense_type or dense_type_for(n, ann_threshold)
    if kind == "ivfpq_refine" and n < IVFPQ_MIN:
        log.warning("%d passages are too few to train IVF-PQ (needs %d): using an exact index", n, IVFPQ_MIN)
        kind = "flat_ip"
    info = {"file": layout.DENSE_FILE, "metric": "inner_product", "ann_threshold": ann_threshold, "type": kind}
    info |= {"hnsw": None}
    if kind == "hnsw_flat":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = ef_search
        info["hnsw"] = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": ef_search}
        index.add(vecs)
    elif kind == "ivfpq_refine":
        # Compressed codes (PQ_M bytes a vector) find candidates; the exact vectors (a flat index, memory-mapped
        # when loaded) re-rank k_factor x k of them, so scores and passage_vectors stay exact.
        nlist = ivf_lists(n)
        m = PQ_M if dim % PQ_M == 0 else next(d for d in range(min(PQ_M, dim), 0, -1) if dim % d == 0)
        quantizer = faiss.IndexFlatIP(dim)
        ivfpq = faiss.IndexIVFPQ(quantizer, dim, nlist, m, PQ_NBITS, faiss.METRIC_INNER_PRODUCT)
        ivfpq.own_fields = True
        quantizer.this.disown()
        rng = np.random.default_rng(seed)
        size = min(n, train_size or max(40 * nlist, 50_000))
        sample = vecs if size >= n else vecs[np.sort(rng.choice(n, size, replace=False))]
        ivfpq.train(sample)
        ivfpq.nprobe = nprobe
        index = faiss.IndexRefineFlat(ivfpq)
        index.own_fields = True
        ivfpq.this.disown()
        index.k_factor = k_factor
        index.add(vecs)
        info["ivfpq"] = {"nlist": nlist, "m": m, "nbits": PQ_NBITS, "nprobe": nprobe, "k_factor": k_factor}
        info["ivfpq"] |= {"train_size": int(size), "refine": "flat"}
    elif kind == "flat_ip":
        # Exact search is fast enough below the threshold and has perfect recall.
        index = faiss.IndexFlatIP(dim)
        index.add(vecs)
    else:
        raise ValueError(f"unknown dense index type {kind!r}: flat_ip, hnsw_flat or ivfpq_refine")
    return index, info


def _write_encoder(root: Path, model: str, backend: str | None, previous: Path) -> dict:
    """The query encoder's ONNX export, from the first of: the export cache, the previous index (when its export
    is the one this machine would make), a new export (which loads the model)."""
    backend = backend or os.environ.get("QA_ENCODER_BACKEND") or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder backend {backend!r}: {', '.join(BACKENDS)}")
    if backend == "torch":
        return {"backend": "torch"}
    try:
        name, spec = resolve(model)
        found = copy_cached_export(name, spec, root, backend) or _copy_previous_export(previous, root, name, backend)
        return found or export_onnx(load_encoder(model), root, backend)
    except Exception as exc:  # no onnxruntime, an exporter that fails: queries are encoded by torch
        log.warning("queries will be encoded with torch: %s", exc)
        return {"backend": "torch", "onnx_error": " ".join(str(exc).split())[:300]}


def _copy_previous_export(previous: Path, root: Path, name: str, backend: str) -> dict | None:
    """The previous index's export, if it has the same key and its files match that index's checksums."""
    try:
        manifest = json.loads((previous / layout.MANIFEST_FILE).read_text(encoding="utf-8"))
        if manifest_schema.problem(manifest):
            return None
        info, files = manifest["encoder"], manifest["files"]
        wanted = info.get("backend") == backend and manifest["model"]["name"] == name
        if not wanted or info.get("export_key") != export_key(name, backend):
            return None
        for rel in (info["file"], info["tokenizer"]):
            if not layout.inside(previous, rel) or layout.sha256_file(previous / rel) != files[rel]:
                return None
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(previous / rel, root / rel)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def _write_bm25(root: Path, passages: list[Passage]) -> dict:
    import bm25s

    tokens = layout.bm25_tokenize([p.text for p in passages], return_ids=True, closed_compounds=True)
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    bm25.save(str(root / layout.BM25_DIR), show_progress=False)
    return {
        "dir": layout.BM25_DIR,
        "library": "bm25s",
        "method": bm25.method,
        "k1": bm25.k1,
        "b": bm25.b,
        "stemmer": layout.STEMMER_LANGUAGE,
        "stopwords": layout.STOPWORDS,
        "doc_count": int(bm25.scores["num_docs"]),
    }


def _write_store(root: Path, passages: list[Passage], works: list[Work], extra: dict, arrays: dict) -> None:
    _write_text(root / layout.PASSAGES_FILE, (_dumps(p.to_dict()) + "\n" for p in passages))
    _write_text(root / layout.WORKS_FILE, [_dumps([w.to_dict() for w in works])])
    for key, value in extra.items():
        _write_text(root / f"{key}.json", [_dumps(value)])
    for key, value in arrays.items():
        np.save(root / f"{key}.npy", np.ascontiguousarray(value), allow_pickle=False)


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _write_text(path: Path, chunks: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(chunks)


def _finish(root: Path, manifest: dict) -> None:
    """Hash and fsync every file, then write the manifest last: its presence marks a complete index. It lists
    every file with its sha256 and carries a checksum of itself (index/manifest.py)."""
    files = {}
    for path in layout.index_files(root):
        files[path.relative_to(root).as_posix()] = layout.sha256_file(path)
        layout.fsync_path(path)
    for d in {p.parent for p in layout.index_files(root)} | {root}:
        layout.fsync_path(d)
    manifest["files"] = files
    manifest[manifest_schema.CHECKSUM_KEY] = manifest_schema.checksum(manifest)  # last: it covers all the rest
    path = root / layout.MANIFEST_FILE
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=2)
        f.flush()
        os.fsync(f.fileno())
    layout.fsync_path(root)


def _library_versions() -> dict[str, str]:
    versions = {}
    for dist, module in _LIBRARIES.items():
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = getattr(__import__(module), "__version__", "unknown")
    return versions
