"""Build the search index: dense vectors (FAISS), a BM25 index (bm25s), the passage store, a manifest.

Everything goes into one directory that replaces the previous index atomically (see layout.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from corpus.model import Passage, Work
from index import layout
from index.encoder import DEFAULT_MODEL, Encoder, load_encoder

log = logging.getLogger(__name__)

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 128
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
) -> Path:
    """Build the index for `passages` into `out_dir`, replacing any previous index only on success.

    `corpus_files` (file name -> sha256) is recorded so loading can tell when the corpus changed.
    `extra` maps a key to a JSON-serialisable value, stored as `<key>.json` (read with SearchIndex.extra);
    `arrays` maps a key to a numeric numpy array, stored as `<key>.npy` (read with SearchIndex.array).
    """
    extra, arrays = extra or {}, arrays or {}
    _check_inputs(passages, extra, arrays)
    out_dir = Path(out_dir).absolute()
    layout.recover(out_dir)
    encoder = load_encoder(model)
    tmp = layout.sibling(out_dir, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        dense = _write_dense(tmp, encoder, passages, section_prefix, ann_threshold, ef_search, show_progress)
        manifest = {
            "format_version": layout.FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": _model_info(encoder, section_prefix),
            "corpus_files": dict(sorted(corpus_files.items())),
            "passage_count": len(passages),
            "work_count": len(works),
            "dense": dense,
            "lexical": _write_bm25(tmp, passages),
            "extra": sorted(extra),
            "arrays": sorted(arrays),
            "libraries": _library_versions(),
        }
        _write_store(tmp, passages, works, extra, arrays)
        _finish(tmp, manifest)
        layout.swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built index %s: %d passages, %s", out_dir, len(passages), manifest["dense"]["type"])
    return out_dir


def _check_inputs(passages: list[Passage], extra: dict, arrays: dict) -> None:
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


def _model_info(encoder: Encoder, section_prefix: bool) -> dict:
    return {
        "name": encoder.name,
        "dim": encoder.dim,
        "query_prefix": encoder.spec.query_prefix,
        "passage_prefix": encoder.spec.passage_prefix,
        "section_prefix": section_prefix,
    }


def embedding_text(p: Passage, section_prefix: bool = True) -> str:
    """Text the dense model sees: a section title carries meaning the passage alone may lack."""
    text = layout.clean_text(p.text)
    return f"{layout.clean_text(p.section)}\n{text}" if section_prefix and p.section else text


def _write_dense(
    root: Path,
    encoder: Encoder,
    passages: list[Passage],
    section_prefix: bool,
    ann_threshold: int,
    ef_search: int,
    show_progress: bool,
) -> dict:
    import faiss

    texts = [embedding_text(p, section_prefix) for p in passages]
    vecs = encoder.encode_passages(texts, show_progress=show_progress)
    info = {"file": layout.DENSE_FILE, "metric": "inner_product", "ann_threshold": ann_threshold}
    if len(passages) >= ann_threshold:
        index = faiss.IndexHNSWFlat(encoder.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = ef_search
        hnsw = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": ef_search}
        info |= {"type": "hnsw_flat", "hnsw": hnsw}
    else:
        # Exact search is fast enough below the threshold and has perfect recall.
        index = faiss.IndexFlatIP(encoder.dim)
        info |= {"type": "flat_ip", "hnsw": None}
    index.add(np.ascontiguousarray(vecs, dtype=np.float32))
    faiss.write_index(index, str(root / layout.DENSE_FILE))
    return info


def _write_bm25(root: Path, passages: list[Passage]) -> dict:
    import bm25s

    tokens = layout.bm25_tokenize([p.text for p in passages], return_ids=True)
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
    """Hash and fsync every file, then write the manifest last: its presence marks a complete index."""
    files = {}
    for path in layout.index_files(root):
        files[path.relative_to(root).as_posix()] = layout.sha256_file(path)
        layout.fsync_path(path)
    for d in {p.parent for p in layout.index_files(root)} | {root}:
        layout.fsync_path(d)
    manifest["files"] = files
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
