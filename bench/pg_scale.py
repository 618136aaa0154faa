"""The PostgreSQL store at scale, beside the embedded files: a synthetic collection built from the demo's vectors.

    python bench/pg_scale.py --index DIR --store postgresql://... [--size 100000] [--queries 300] [--json out.json]

DIR is a built demo index (its vectors, passages and query encoder). The synthetic collection has --size
passages: thirds of the demo passages' texts mixed (so BM25 has real words; --texts repeated: the texts
repeated, as runs before schema 3 did) with vectors from bench/scale.py's
synthesize (real vectors mixed and perturbed: the corpus's geometry, not uniform noise). Both stores are built by
index.build.build_index, the code `qa index build` uses, as HNSW (M 32, ef_construction 200, ef_search 128):
files (FAISS + bm25s) in a temporary directory, and a new version in the database.

The database's segments are vacuumed before they are measured (as autovacuum does minutes after a build).
--measure-only measures the database's current version again without building (the files store is built); with
--depths D [D ...], only its lexical search at those depths against exact BM25, over the 68 distinct dev questions.

Reported: build time and load rate (passages/s), size on disk (the index directory; the version's segments' tables
and indexes in the database), single-query latency p50/p99 of dense search, of lexical search, and of one ask's
retrieval (dense 60 + lexical 60 + the vectors of 120 candidates), and dense recall@10 against exact search;
for the database, lexical search with every posting read (exact BM25, as before schema 3) and the recall@10 of
the default (impact-ordered) search against it (lexical_against_exact).
Queries: the dev questions encoded by the demo's query encoder, then perturbed passage vectors.

Replicas (--replicas 1 2): for each count R, R processes each open the database's current version as a
replica does (PgSearchIndex.open: the passages and metadata into memory; its time is reported) and then run one
ask's retrieval in a loop for --duration seconds, all at once; throughput is the retrievals per second of all
of them together. The models' work of an ask (encoding the question, re-ranking) is not in it: that is the same
per replica for both stores (bench/load.py measures whole asks over HTTP).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

K = 10
POOL = 60  # qa/engine.py POOL: candidates from each retriever


def synthetic_collection(index, size: int, seed: int, texts: str = "mixed"):
    from scale import synthesize

    base = index.passage_vectors(np.arange(len(index)))
    vectors = synthesize(base, size, seed)
    passages = [replace(index.passages[i % len(index)], id=f"s{i:07d}") for i in range(size)]
    if texts == "mixed":
        passages = mixed_texts(passages, [p.text for p in index.passages], seed)
    return passages, list(index.works.values()), vectors


def mixed_texts(passages: list, texts: list[str], seed: int) -> list:
    """Each passage's text the first third of its own text's words, then the middle third of a random demo passage's
    and the last third of another's: real words and lengths, but not the demo's few hundred texts repeated (at 1M,
    ~1,900 copies of each: a term's postings would be blocks of identical passages, tied in BM25)."""
    rng = np.random.default_rng(seed)
    words = [t.split() for t in texts]
    others = rng.integers(len(texts), size=(len(passages), 2))
    out = []
    for p, (b, c) in zip(passages, others.tolist(), strict=True):
        a, b, c = words[int(p.id[1:]) % len(texts)], words[b], words[c]
        parts = a[: len(a) // 3] + b[len(b) // 3 : 2 * len(b) // 3] + c[2 * len(c) // 3 :]
        out.append(replace(p, text=" ".join(parts)))
    return out


def dev_questions() -> list[str]:
    dev = ROOT.parent / "shared" / "eval" / "dev.jsonl"
    return [json.loads(x)["question"] for x in dev.read_text(encoding="utf-8").splitlines() if x.strip()]


def query_vectors(index, vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    from scale import synthesize

    real = index.encoder.encode_queries(dev_questions())
    extra = synthesize(vectors[:50_000], max(0, count - len(real)), seed + 1, noise=0.8)
    return np.ascontiguousarray(np.vstack([real, extra])[:count], dtype=np.float32)


def exact_top(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The exact top K by inner product, a few queries at a time (1M x 384 scores fit, a full sort would not)."""
    out = []
    for a in range(0, len(queries), 32):
        sims = queries[a : a + 32] @ vectors.T
        top = np.argpartition(-sims, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out.append(np.take_along_axis(top, order, axis=1))
    return np.vstack(out)


def build(location, passages, works, vectors) -> float:
    from index.build import build_index

    t0 = time.perf_counter()
    build_index(passages, works, {}, location, passage_vectors=vectors, dense_type="hnsw_flat",
                encoder_backend="torch", show_progress=False)  # fmt: skip
    return time.perf_counter() - t0


def percentiles(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def measure(index, queries: np.ndarray, questions: list[str], exact: np.ndarray) -> dict:
    dense, lexical, ask, found = [], [], [], []
    for q in queries:
        t0 = time.perf_counter()
        _, pos = index.dense_search(q, K)
        dense.append(time.perf_counter() - t0)
        found.append(pos[0])
    for i, question in enumerate(questions):
        t0 = time.perf_counter()
        index.lexical_search(question, POOL)
        lexical.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, d = index.dense_search(queries[i], POOL)
        _, lpos = index.lexical_search(question, POOL)
        index.passage_vectors(sorted(set(d[0].tolist()) | set(lpos.tolist())))
        ask.append(time.perf_counter() - t0)
    recall = np.mean([len(set(f) & set(e)) / K for f, e in zip(found, exact, strict=True)])
    out = {"dense": percentiles(dense), "lexical": percentiles(lexical), "retrieval": percentiles(ask)}
    out |= {"recall@10": round(float(recall), 4)}
    if getattr(index, "lexical_depth", None) is not None:
        out |= lexical_against_exact(index, questions)
    return out


def lexical_against_exact(index, questions: list[str], exact: list | None = None) -> dict:
    """The PostgreSQL store's lexical search (each term's best postings, PgSearchIndex.lexical_depth) against exact
    BM25 (every posting read: lexical_depth None, the search before impact ordering), on the same collection:
    both latencies, and recall@10 of the top 10 of POOL. Recall counts ties: a passage returned whose score is at
    least the exact 10th best's belongs to an exact top 10 (the scores returned are exact). `exact`: the exact
    results, when already known."""
    depth = index.lexical_depth
    fast, times = searches(index, questions)
    out = {"lexical_depth": depth, "lexical_fast": percentiles(times)}
    if exact is None:
        index.lexical_depth = None
        try:
            exact, times = searches(index, questions)
        finally:
            index.lexical_depth = depth
        out["lexical_exact"] = percentiles(times)
    recalls, same = [], 0
    for (scores, _), (best, _) in zip(fast, exact, strict=True):
        if not len(best):
            continue
        cut = best[:K][-1] * (1 - 1e-6)
        recalls.append(min(K, int((scores[:K] >= cut).sum())) / min(K, len(best)))
        same += len(scores[:K]) == len(best[:K]) and bool(np.allclose(scores[:K], best[:K], rtol=1e-6))
    return out | {
        "lexical_within_depth_share": round(float(np.mean([within_depth(index, q) for q in questions])), 4),
        "lexical_recall@10": round(float(np.mean(recalls)), 4),
        "lexical_top10_exact_share": round(same / max(len(recalls), 1), 4),
    }


def searches(index, questions: list[str]) -> tuple[list, list[float]]:
    found, times = [], []
    for question in questions:
        t0 = time.perf_counter()
        found.append(index.lexical_search(question, POOL))
        times.append(time.perf_counter() - t0)
    return found, times


def retrieval(index, query: np.ndarray, question: str) -> None:
    _, d = index.dense_search(query, POOL)
    _, lpos = index.lexical_search(question, POOL)
    index.passage_vectors(sorted(set(d[0].tolist()) | set(lpos.tolist())))


def replica(args) -> int:
    """One replica process (--replica DIR): open the current version, say it is ready, wait for the start, loop."""
    import os

    from index.stores import open_index

    t0 = time.perf_counter()
    index = open_index(args.store)
    index._query_cache_size = 0
    loaded = time.perf_counter() - t0
    queries = np.load(args.replica / "queries.npy")
    questions = json.loads((args.replica / "questions.json").read_text())
    (args.replica / f"ready-{os.getpid()}").touch()
    while not (args.replica / "start").exists():
        time.sleep(0.05)
    done, end = 0, time.time() + args.duration
    while time.time() < end:
        retrieval(index, queries[done % len(queries)], questions[done % len(questions)])
        done += 1
    print(json.dumps({"load_s": round(loaded, 1), "retrievals": done}), flush=True)
    return 0


def throughput(store: str, queries: np.ndarray, questions: list[str], replicas: int, duration: float) -> dict:
    """R replica processes at once against one database: retrievals per second in all, and each one's load time.
    The loops start together, once every replica has loaded."""
    work = Path(tempfile.mkdtemp(prefix="qa-pg-replicas-"))
    try:
        np.save(work / "queries.npy", queries)
        (work / "questions.json").write_text(json.dumps(questions))
        cmd = [sys.executable, __file__, "--store", store, "--replica", str(work), "--duration", str(duration)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(replicas)]
        while len(list(work.glob("ready-*"))) < replicas:
            if any(proc.poll() not in (None, 0) for proc in procs):
                raise RuntimeError("a replica failed to start")
            time.sleep(0.1)
        (work / "start").touch()
        outs = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(o["retrievals"] for o in outs)
    return {"replicas": replicas, "retrievals_per_s": round(total / duration, 1), "load_s": [o["load_s"] for o in outs]}


def depth_sweep(store: str, depths: list[int]) -> dict:
    """Lexical search of the database's current version at each depth against exact BM25 (every posting read),
    over the distinct dev questions (lexical_against_exact; p99 of 68 is about the slowest)."""
    from index.stores import open_index

    index = open_index(store)
    index._query_cache_size = 0
    questions = dev_questions()
    index.lexical_depth = None
    exact, times = searches(index, questions)
    out = {"questions": len(questions), "exact": percentiles(times)}
    print("exact", json.dumps(out["exact"]), file=sys.stderr, flush=True)
    for depth in depths:
        index.lexical_depth = depth
        out[str(depth)] = lexical_against_exact(index, questions, exact)
        print(depth, json.dumps(out[str(depth)]), file=sys.stderr, flush=True)
    return out


def within_depth(index, question: str) -> bool:
    """Whether no term of the question is in more of the version's passages than the depth (the search is then
    exact by construction)."""
    from index import layout

    terms = layout.bm25_tokenize([question], return_ids=False)[0]
    with index.db.connection() as conn:
        ids = [t for (t,) in conn.execute("SELECT term_id FROM terms WHERE term = ANY(%s)", (terms,))]
    return all(index._df[t] <= index.lexical_depth for t in ids if t < len(index._df))


def vacuum(url: str) -> None:
    """VACUUM the current version's segments, as autovacuum does minutes after a build: index-only scans then
    read no table rows (a build's transaction cannot vacuum what it wrote). Both lexical searches gain."""
    import psycopg

    from index import pg_schema as schema

    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SELECT version FROM current_version").fetchone()[0]
        manifest = conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]
        for seg in manifest["segments"]:
            for table in (schema.passages_table(seg["id"]), schema.postings_table(seg["id"])):
                conn.execute(f"VACUUM (ANALYZE) {table}")


def database_size(url: str, version: int) -> int:
    """The version's segments (tables and indexes) and its rows of small data."""
    import psycopg

    from index import pg_schema as schema

    with psycopg.connect(url) as conn:
        manifest = conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]
        segments = [s["id"] for s in manifest["segments"]]
        tables = [f(s) for s in segments for f in (schema.passages_table, schema.postings_table)]
        size = sum(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0] for t in tables)
        rows = "SELECT coalesce(sum(pg_column_size({})), 0) FROM {} WHERE {} = ANY(%s)"
        for column, table, key, owners in (("data", "arrays", "version", [version]),
                                           ("value", "extras", "version", [version]),
                                           ("data", "segment_arrays", "segment", segments),
                                           ("value", "segment_extras", "segment", segments)):  # fmt: skip
            size += conn.execute(rows.format(column, table, key), (owners,)).fetchone()[0]
        blobs = list(manifest.get("blobs", {}).values())
        size += conn.execute("SELECT coalesce(sum(length(data)), 0) FROM stored_blobs WHERE sha256 = ANY(%s)",
                             (blobs,)).fetchone()[0]  # fmt: skip
    return size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, help="a built demo index directory")
    ap.add_argument("--store", required=True, help="postgresql://... (a new collection version is written there)")
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--stores", default="files,postgresql", help="which stores to build and measure")
    texts = "passage texts: thirds of demo passages mixed, or the demo's repeated (the runs before schema 3)"
    ap.add_argument("--texts", choices=("mixed", "repeated"), default="mixed", help=texts)
    again = "measure the database's current version (built by an earlier run of the same --size and --texts)"
    ap.add_argument("--measure-only", action="store_true", help=again)
    sweep = "with --measure-only: only lexical search at these depths against exact BM25 (depth_sweep)"
    ap.add_argument("--depths", type=int, nargs="*", default=[], help=sweep)
    ap.add_argument("--replicas", type=int, nargs="*", default=[], help="replica counts to measure throughput with")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of each throughput run")
    ap.add_argument("--replica", type=Path, help=argparse.SUPPRESS)  # internal: run as one replica process
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.replica:
        return replica(args)
    if args.measure_only and args.depths:
        result = depth_sweep(args.store, args.depths)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return 0
    if not args.index:
        ap.error("--index is required")
    from index.stores import open_index

    demo = open_index(args.index)
    passages, works, vectors = synthetic_collection(demo, args.size, seed=7, texts=args.texts)
    queries = query_vectors(demo, vectors, args.queries, seed=7)
    questions = (dev_questions() * 10)[: args.queries]
    exact = exact_top(queries, vectors)
    work = Path(tempfile.mkdtemp(prefix="qa-pg-scale-"))
    result = {"size": args.size, "queries": args.queries}
    try:
        for name, location in (("files", work / "index"), ("postgresql", args.store)):
            if name not in args.stores.split(","):
                continue
            figures = {}
            if not (args.measure_only and name == "postgresql"):
                seconds = build(location, passages, works, vectors)
                figures = {"build_s": round(seconds, 1), "passages_per_s": round(args.size / seconds)}
            if name == "postgresql":
                vacuum(args.store)
            index = open_index(location)
            index._query_cache_size = 0
            if len(index) != args.size:
                raise SystemExit(f"the current version has {len(index)} passages, not --size {args.size}")
            size = database_size(args.store, index.version) if name == "postgresql" else du(work / "index")
            figures["bytes"] = size
            result[name] = figures | measure(index, queries, questions, exact)
            print(name, json.dumps(result[name]), file=sys.stderr, flush=True)
            del index
        del passages, vectors
        for count in args.replicas:
            result.setdefault("throughput", []).append(throughput(args.store, queries, questions, count, args.duration))
            print(json.dumps(result["throughput"][-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    sys.exit(main())
