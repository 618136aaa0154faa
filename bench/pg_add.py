"""Adding one small document to a large collection in the PostgreSQL store: time and rows written.

    python bench/pg_add.py --index DEMO_INDEX --store postgresql://... [--size 100000] [--json out.json]

Builds the synthetic collection of bench/pg_scale.py (--size passages, HNSW) into the database, then writes
the same collection plus one small document (DOC_PASSAGES passages of a new file, its own work) through
index.build.build_index, the code `qa index add` ends in. Reported: the add's wall time, the rows it inserted
(pg_stat_database.tup_inserted: table rows, not index entries), the bytes of the tables and indexes
it created, and lexical search p50/p99 (top 60, the dev questions) on the version after the add. Runs with the
code on PYTHONPATH, so the same script measures the store before (a whole new version a write) and after
(segments): PYTHONPATH=../main python bench/pg_add.py ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
DOC_PASSAGES = 8
QUERIES = 300


def inserted(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        time.sleep(1.1)  # the statistics a backend flushes reach the view within a second
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT tup_inserted FROM pg_stat_database WHERE datname = current_database()").fetchone()[
            0
        ]


def relations(url: str) -> dict[str, tuple[int, int]]:
    """Every table and index of the project's schema: (relfilenode, bytes)."""
    import psycopg

    sql = "SELECT relname, relfilenode, pg_relation_size(oid) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    with psycopg.connect(url) as conn:
        return {name: (node, size) for name, node, size in conn.execute(sql)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from pg_scale import build, dev_questions, percentiles, synthetic_collection

    from corpus.model import Work
    from index.stores import open_index

    demo = open_index(args.index)
    passages, works, vectors = synthetic_collection(demo, args.size, seed=7)
    result: dict = {"size": args.size, "doc_passages": DOC_PASSAGES}
    result["build_s"] = round(build(args.store, passages, works, vectors), 1)
    template = works[0]
    work = Work(**(template.__dict__ | {"id": "added-work", "file": "zz-added.txt", "title": "An added note"}))
    doc = [replace(demo.passages[i], id=f"added{i}", work=work.id, file=work.file) for i in range(DOC_PASSAGES)]
    rng = np.random.default_rng(3)
    extra = rng.standard_normal((DOC_PASSAGES, vectors.shape[1])).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    before, rows = relations(args.store), inserted(args.store)
    seconds = build(args.store, passages + doc, works + [work], np.vstack([vectors, extra]))
    after, rows = relations(args.store), inserted(args.store) - rows
    new = {name: size for name, (node, size) in after.items() if before.get(name, (None,))[0] != node}
    graphs = [name for name in before if "embedding" in name]  # the HNSW indexes
    kept = [name for name in graphs if after.get(name, (None,))[0] == before[name][0]]
    result["add"] = {"seconds": round(seconds, 2), "rows_inserted": rows, "new_relation_bytes": sum(new.values()),
                     "hnsw_indexes_kept": kept}  # fmt: skip
    print("add", json.dumps(result["add"]), file=sys.stderr, flush=True)
    index = open_index(args.store)
    index._query_cache_size = 0
    times = []
    for question in (dev_questions() * 10)[:QUERIES]:
        t0 = time.perf_counter()
        index.lexical_search(question, 60)
        times.append(time.perf_counter() - t0)
    result["lexical_after_add"] = percentiles(times)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
