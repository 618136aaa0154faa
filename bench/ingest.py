"""Ingestion time and peak memory against a file's size: growth should be linear.

    python bench/ingest.py                 # 1, 2, 5 and 9.5 MB (under the 10 MB per-file limit), and 50 MB refused
    python bench/ingest.py --sizes 1,4     # other sizes, in MB

Each size is one Markdown file made of the demo collection's paragraphs (real prose: headings, notes, quotes),
repeated with a counter so no two copies are near-duplicates, in a folder of its own. Each run is a new process
(`load_corpus` only: cleaning, structure, passages; no encoding), so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
t0 = time.perf_counter()
from corpus.ingest import load_corpus
c = load_corpus(Path(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - t0, "passages": len(c.passages),
                  "skipped": [s.reason for s in c.skipped],
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def sample_text(mb: float) -> str:
    """About `mb` megabytes of the demo's prose, each copy of a paragraph numbered apart."""
    sys.path.insert(0, str(ROOT))
    from corpus.ingest import CORPUS_DIR

    paragraphs = [p for f in sorted(CORPUS_DIR.glob("*.txt")) for p in f.read_text(encoding="utf-8").split("\n\n")]
    paragraphs = [p.strip() for p in paragraphs if len(p.split()) >= 20]
    out, size, i = [], 0, 0
    while size < mb * 2**20:
        p = f"Note {i}. {paragraphs[i % len(paragraphs)]}"
        if i % 40 == 0:
            p = f"## Part {i // 40}\n\n{p}"
        out.append(p)
        size += len(p.encode("utf-8")) + 2
        i += 1
    return "\n\n".join(out) + "\n"


def measure(mb: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="qa-bench-ingest-") as tmp:
        path = Path(tmp) / "big.md"
        path.write_text(sample_text(mb), encoding="utf-8")
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, tmp, str(ROOT)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(out.stderr[-2000:])
        return {"mb": path.stat().st_size / 2**20, "wall_s": wall} | json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,2,5,9.5,50", help="comma-separated sizes in MB")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; ingestion only (no encoding)")
    print("| MB | passages | seconds | s per MB | peak RSS MiB | outcome |\n|---|---|---|---|---|---|")
    for mb in (float(x) for x in args.sizes.split(",")):
        r = measure(mb)
        outcome = "; ".join(r["skipped"]) or "ingested"
        row = [f"{r['mb']:.1f}", r["passages"], f"{r['seconds']:.1f}", f"{r['seconds'] / r['mb']:.2f}"]
        print("| " + " | ".join(str(x) for x in [*row, f"{r['peak_mib']:.0f}", outcome]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
