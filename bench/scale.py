"""Dense search at scale: synthetic collections of 100k and 1M passages built from the real corpus's vectors.

    python bench/scale.py --index DIR [--sizes 100000 1000000] [--types flat_ip hnsw_flat ivfpq_refine]
                          [--hnsw-max 100000] [--queries 500] [--workdir /tmp/qa-scale] [--json out.json]

Synthetic vectors: normalise(b_i + a * b_j + noise) where b_i, b_j are real vectors of the index (every
passage vector and every stored sentence vector), a ~ U(0, 0.5) and the noise is Gaussian with norm ~0.6,
so the collection keeps the corpus's geometry (topics, anisotropy) instead of uniform random vectors.
Queries: the dev questions encoded by the index's query encoder, plus perturbed real vectors.

Each index type is built with index.build.make_dense (the code `qa index build` uses) and written to
disk; a fresh child process then loads it the way the service does (index.store._read_faiss, memory-mapped
with faiss.IO_FLAG_MMAP_IFC) and reports start-up time, RSS, p50/p99 single-query latency and recall@10
against exact search. HNSW above --hnsw-max is skipped (its 1M build takes tens of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

K = 10
IVF_SWEEP = [(16, 16), (32, 16), (32, 32), (64, 16), (64, 32), (128, 32), (64, 64)]  # (nprobe, k_factor)
HNSW_SWEEP = [64, 128, 256]  # efSearch


def status_kib(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def base_vectors(index_dir: Path) -> np.ndarray:
    import faiss

    dense = faiss.read_index(str(index_dir / "dense.faiss"))
    passages = dense.reconstruct_n(0, dense.ntotal)
    parts = [passages]
    sv = index_dir / "sentence_vectors.npy"
    if sv.exists():
        s = np.load(sv).astype(np.float32)
        parts.append(s / np.linalg.norm(s, axis=1, keepdims=True))
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)


def synthesize(base: np.ndarray, n: int, seed: int, noise: float = 0.6, chunk: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dim = base.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        i, j = rng.integers(len(base), size=m), rng.integers(len(base), size=m)
        mix = rng.uniform(0, 0.5, size=(m, 1)).astype(np.float32)
        v = base[i] + mix * base[j] + rng.standard_normal((m, dim), dtype=np.float32) * (noise / np.sqrt(dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[a : a + m] = v
    return out


def queries(index_dir: Path, base: np.ndarray, count: int, seed: int) -> np.ndarray:
    from index.store import SearchIndex

    dev = ROOT.parent / "shared" / "eval" / "dev.jsonl"
    qs = [json.loads(x)["question"] for x in dev.read_text(encoding="utf-8").splitlines() if x.strip()]
    index = SearchIndex.load(index_dir)
    real = index.encoder.encode_queries(qs)
    extra = synthesize(base, max(0, count - len(real)), seed + 1, noise=0.8)
    return np.ascontiguousarray(np.vstack([real, extra])[:count], dtype=np.float32)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def child(args) -> int:
    """Load one index file as the service does, then measure. Prints one JSON line."""
    import faiss

    from index.store import _read_faiss

    faiss.omp_set_num_threads(int(os.environ.get("QA_FAISS_THREADS", "1")))
    qv = np.load(args.queries)
    gt = np.load(args.gt)
    rss0 = status_kib("VmRSS")
    info = json.loads(Path(args.info).read_text())
    t0 = time.perf_counter()
    dense = _read_faiss(Path(args.file), {"dense": info}, mmap=not args.no_mmap)
    startup = time.perf_counter() - t0
    rss_loaded = status_kib("VmRSS")

    def run(label: str) -> dict:
        lat, found = [], []
        for q in qv:
            t = time.perf_counter()
            _, ids = dense.search(q[None, :], K)
            lat.append((time.perf_counter() - t) * 1000)
            found.append(ids[0])
        lat = lat[5:] if len(lat) > 20 else lat  # first few queries fault pages in
        recall = float(np.mean([len(set(f) & set(g)) / K for f, g in zip(found, gt, strict=True)]))
        return {
            "setting": label,
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "recall@10": recall,
        }

    runs = []
    if info["type"] == "ivfpq_refine":
        ivf = faiss.extract_index_ivf(dense)
        for nprobe, kf in IVF_SWEEP:
            ivf.nprobe, dense.k_factor = nprobe, kf
            runs.append(run(f"nprobe={nprobe} k_factor={kf}"))
        ivf.nprobe, dense.k_factor = info["ivfpq"]["nprobe"], info["ivfpq"]["k_factor"]
        runs.append(run(f"default nprobe={ivf.nprobe} k_factor={dense.k_factor}"))
    elif info["type"] == "hnsw_flat":
        for ef in HNSW_SWEEP:
            dense.hnsw.efSearch = ef
            runs.append(run(f"efSearch={ef}"))
    else:
        runs.append(run("exact"))
    out = {
        "startup_s": startup,
        "rss_before_mib": rss0 / 1024,
        "rss_loaded_mib": rss_loaded / 1024,
        "rss_after_queries_mib": status_kib("VmRSS") / 1024,
        "rss_anon_mib": status_kib("RssAnon") / 1024,  # the rest is mapped index pages the kernel can drop
        "rss_file_mib": status_kib("RssFile") / 1024,
        "hwm_mib": status_kib("VmHWM") / 1024,
        "runs": runs,
    }
    print("CHILD_JSON " + json.dumps(out), flush=True)
    return 0


def measure(file: Path, info: dict, qpath: Path, gtpath: Path, no_mmap: bool = False) -> dict:
    ipath = file.with_suffix(".info.json")
    ipath.write_text(json.dumps(info))
    cmd = [sys.executable, __file__, "--child", "--file", str(file), "--info", str(ipath)]
    cmd += ["--queries-file", str(qpath), "--gt", str(gtpath)] + (["--no-mmap"] if no_mmap else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in out.stdout.splitlines() if x.startswith("CHILD_JSON ")), None)
    if line is None:
        raise RuntimeError(f"child failed: {out.stderr[-3000:]}")
    return json.loads(line[len("CHILD_JSON ") :])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--types", nargs="+", default=["flat_ip", "hnsw_flat", "ivfpq_refine"])
    ap.add_argument("--hnsw-max", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/qa-scale"))
    ap.add_argument("--keep", action="store_true", help="keep the index files")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--info", help=argparse.SUPPRESS)
    ap.add_argument("--queries-file", help=argparse.SUPPRESS)
    ap.add_argument("--gt", help=argparse.SUPPRESS)
    ap.add_argument("--no-mmap", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.queries = args.queries_file
        return child(args)
    if args.index is None:
        ap.error("--index is required")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import faiss
    from latency import machine, table

    from index.build import make_dense

    print(f"# scale  {machine()}  faiss {faiss.__version__}", flush=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = base_vectors(args.index)
    qv = queries(args.index, base, args.queries, seed=7)
    qpath = args.workdir / "queries.npy"
    np.save(qpath, qv)
    print(f"base vectors {len(base)} (passages + sentences), queries {len(qv)}", flush=True)
    results = []
    for n in args.sizes:
        t = time.perf_counter()
        vecs = synthesize(base, n, seed=n)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        exact = faiss.IndexFlatIP(vecs.shape[1])
        exact.add(vecs)
        _, gt = exact.search(qv, K)
        del exact
        gtpath = args.workdir / f"gt-{n}.npy"
        np.save(gtpath, gt)
        print(f"\nn={n}: generated in {gen_s:.1f}s, ground truth in {time.perf_counter() - t:.1f}s", flush=True)
        for kind in args.types:
            if kind == "hnsw_flat" and n > args.hnsw_max:
                print(f"  {kind}: skipped above --hnsw-max {args.hnsw_max}", flush=True)
                continue
            t = time.perf_counter()
            index, info = make_dense(vecs, dense_type=kind)
            build_s = time.perf_counter() - t
            file = args.workdir / f"{kind}-{n}.faiss"
            t = time.perf_counter()
            faiss.write_index(index, str(file))
            write_s = time.perf_counter() - t
            del index
            m = measure(file, info, qpath, gtpath)
            row = {"n": n, "type": kind, "build_s": build_s, "write_s": write_s, "disk_mib": du(file) / 2**20}
            row |= m | {"params": info.get("ivfpq") or info.get("hnsw")}
            results.append(row)
            best = m["runs"][-1]
            print(
                f"  {kind}: build {build_s:.1f}s, disk {row['disk_mib']:.0f} MiB, start-up {m['startup_s']:.2f}s, "
                f"RSS loaded {m['rss_loaded_mib']:.0f} MiB / after queries {m['rss_after_queries_mib']:.0f} MiB, "
                f"p50 {best['p50_ms']:.2f} ms p99 {best['p99_ms']:.2f} ms recall@10 {best['recall@10']:.3f}",
                flush=True,
            )
            if not args.keep:
                file.unlink()
        del vecs
    print()
    rows = []
    for r in results:
        for run in r["runs"]:
            rows.append([r["n"], r["type"], run["setting"], r["build_s"], r["disk_mib"], r["startup_s"]])
            rows[-1] += [r["rss_after_queries_mib"], run["p50_ms"], run["p99_ms"], run["recall@10"]]
    header = ["passages", "type", "search setting", "build s", "disk MiB", "start-up s (mmap)", "RSS MiB"]
    print(table(rows, [*header, "p50 ms", "p99 ms", "recall@10"]))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=1))
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
