"""Index build time for the bundled corpus, model load included, and passages/s, with a breakdown by stage.

    python bench/build.py [--corpus DIR] [--out DIR] [--backend onnx-int8|onnx|torch] [--cold-export] [--json F]

Runs qa.build.build_default_index in this process (a fresh interpreter: imports and the model load count)
and times, from outside, the steps it calls: imports, corpus ingestion, model load, passage encoding,
attribution (spaCy, in a second process: the wait for it, and its CPU), sentence encoding, FAISS, BM25, the
ONNX export of the query encoder (cached across builds in ~/.cache/verbatim-qa/onnx unless --cold-export),
the passage store, hashing + fsync, and the swap. CPU figures include the spaCy process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()
C_START = time.process_time()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES: dict[str, list[float]] = {}


def timed(name: str, fn):
    def wrapper(*args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            s = STAGES.setdefault(name, [0.0, 0.0])
            s[0] += time.perf_counter() - w
            s[1] += time.process_time() - c

    return wrapper


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--out", type=Path, help="index directory [default: a temporary one, removed]")
    ap.add_argument("--backend", choices=["onnx-int8", "onnx", "torch"])
    ap.add_argument("--cold-export", action="store_true", help="export the ONNX encoder anew (empty cache)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.backend:
        os.environ["QA_ENCODER_BACKEND"] = args.backend
    tmp = tempfile.TemporaryDirectory(prefix="qa-bench-build-")
    if args.cold_export:
        os.environ["QA_CACHE_DIR"] = str(Path(tmp.name) / "cache")
    out = args.out or Path(tmp.name) / "index"

    w, c = time.perf_counter(), time.process_time()
    from latency import machine, table

    import index.build as ib
    import index.encoder as enc
    import qa.build as qe
    from corpus.ingest import CORPUS_DIR

    STAGES["imports"] = [time.perf_counter() - w, time.process_time() - c]
    qe.load_corpus = timed("corpus ingestion", qe.load_corpus)
    qe.load_encoder = timed("model load (torch)", qe.load_encoder)
    parse_in_background = qe._parse_in_background
    qe._parse_in_background = lambda passages: timed(
        "attributions: waiting for the spaCy process", parse_in_background(passages)
    )
    qe._attributions = timed("attributions: mapping to raw offsets", qe._attributions)
    original_encode = enc.Encoder.encode_passages
    calls = []

    def encode_passages(self, texts, show_progress=False, threads=None):
        name = "passage encoding (one thread, beside spaCy)" if not calls else "sentence encoding"
        calls.append(len(texts))
        return timed(name, original_encode)(self, texts, show_progress=False, threads=threads)

    enc.Encoder.encode_passages = encode_passages
    ib.make_dense = timed("FAISS index", ib.make_dense)
    ib._write_bm25 = timed("BM25 index", ib._write_bm25)
    ib.export_onnx = timed("ONNX export of the query encoder", ib.export_onnx)
    ib._write_store = timed("passage store", ib._write_store)
    ib._finish = timed("hashing + fsync + manifest", ib._finish)
    ib.layout.swap_in = timed("swap", ib.layout.swap_in)

    w, c = time.perf_counter(), time.process_time()
    qe.build_default_index(args.corpus or CORPUS_DIR, out, progress=False)
    build_s, build_cpu = time.perf_counter() - w, time.process_time() - c
    total_s, total_cpu = time.perf_counter() - T_START, time.process_time() - C_START
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = children.ru_utime + children.ru_stime  # the spaCy process
    build_cpu, total_cpu = build_cpu + child_cpu, total_cpu + child_cpu
    STAGES["spaCy parse, in a second process alongside the above (its CPU)"] = [0.0, child_cpu]
    manifest = json.loads((out / "manifest.json").read_text())
    n = manifest["passage_count"]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

    print(f"# build  {machine()}")
    print(
        f"\n{n} passages, {calls[1] if len(calls) > 1 else 0} sentences, "
        f"encoder backend {manifest['encoder']['backend']}, index {size / 2**20:.1f} MiB\n"
    )
    rows = [
        ["whole process (interpreter start to index swapped in)", total_s, total_cpu, n / total_s],
        ["build_default_index (model load included)", build_s, build_cpu, n / build_s],
    ]
    print(table(rows, ["", "wall s", "CPU s", "passages/s"]))
    print()
    inner = sum(v[0] for k, v in STAGES.items() if k != "imports")
    STAGES["other"] = [build_s - inner, build_cpu - sum(v[1] for k, v in STAGES.items() if k != "imports")]
    print(table([[k, v[0], v[1]] for k, v in STAGES.items()], ["stage", "wall s", "CPU s"]))
    if args.json:
        result = {"machine": machine(), "passages": n, "total_s": total_s, "build_s": build_s, "stages": STAGES}
        args.json.write_text(json.dumps(result, indent=1))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
