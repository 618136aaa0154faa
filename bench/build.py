"""Index build time, model load included, and passages/s, with a breakdown by stage; then (--add) the time to add
one small document to the collection with add_documents, and to remove it again.

    python bench/build.py [--corpus DIR] [--out DIR] [--backend onnx-int8|onnx|torch] [--cold-export] [--add]
                          [--json F]

Runs qa.build.build_default_index in this process (a fresh interpreter: imports and the model load count)
and times, from outside, the steps it calls: imports, corpus ingestion, sentences and content keys, loading the
previous index (an incremental build), model load, passage encoding, attribution (spaCy, in a second process:
the wait for it, and its CPU), sentence encoding, FAISS, BM25, the ONNX export of the query encoder (cached
across builds in ~/.cache/verbatim-qa/onnx unless --cold-export), the passage store, hashing + fsync, and the
swap. CPU figures include the spaCy process. The stages are summed into ingest + parse, model load, encode, write.

--add copies the corpus to a temporary folder, forgets the loaded model (so the add loads it again, as `qa collection
add` does in a new process), adds a 1 KB Markdown file (qa.collection.add_documents), then removes it again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
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
ENCODED: list[int] = []  # texts per encoding call
GROUPS = {  # the split of a build's time
    "ingest + parse": ("corpus ingestion", "sentences and content keys", "previous index", "attributions"),
    "model load": ("model load",),
    "encode": ("passage encoding", "sentence encoding"),
    "write": ("FAISS", "BM25", "ONNX", "passage store", "hashing", "swap"),
}
NEW_DOCUMENT = """---
title: A short note on harbour records
author: Bench Writer
---

# A short note on harbour records

The harbour master kept a ledger of every ship that entered the port between 1820 and 1890. Historian Maria
Costa argues that the ledger is the best single source for the city's trade in those decades, because it records
the cargo, the flag and the tonnage of each vessel, and because it was kept by the same office for seventy years.

The ledger survives in the municipal archive. Its later volumes were damaged by water in 1911 and some pages can
no longer be read; a copy made by the customs house fills most of the gaps.
"""


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


def instrument() -> None:
    """Wrap the build's steps with timers (STAGES) and count the texts encoded (ENCODED)."""
    import index.build as ib
    import index.encoder as enc
    import qa.build as qe

    qe.load_corpus = timed("corpus ingestion", qe.load_corpus)
    qe._Inputs.of = classmethod(timed("sentences and content keys", qe._Inputs.of.__func__))
    qe.load_previous = timed("previous index: load and check", qe.load_previous)
    enc.load_encoder = timed("model load (torch)", enc.load_encoder)
    qe.load_encoder = ib.load_encoder = enc.load_encoder
    parse_in_background = qe._parse_in_background

    def parse_timed(texts, contexts):
        parse = parse_in_background(texts, contexts)
        return qe._Parse(timed("attributions: waiting for the spaCy process", parse.wait), parse.running)

    qe._parse_in_background = parse_timed
    qe._attributions = timed("attributions: mapping to raw offsets", qe._attributions)
    original_encode = enc.Encoder.encode_passages

    def encode_passages(self, texts, show_progress=False, threads=None):
        # A build encodes its new passages, then its new sentences (a new sentence comes with a new passage).
        name = "passage encoding" if not ENCODED else "sentence encoding"
        ENCODED.append(len(texts))
        return timed(name, original_encode)(self, texts, show_progress=False, threads=threads)

    enc.Encoder.encode_passages = encode_passages
    ib.make_dense = timed("FAISS index", ib.make_dense)
    ib._write_bm25 = timed("BM25 index", ib._write_bm25)
    ib._write_encoder = timed("ONNX query encoder (export, or copy of a cached one)", ib._write_encoder)
    ib._write_store = timed("passage store", ib._write_store)
    ib._finish = timed("hashing + fsync + manifest", ib._finish)
    ib.layout.swap_in = timed("swap", ib.layout.swap_in)


def child_cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def measure(label: str, fn) -> dict:
    """Run fn() with fresh stage timers; the wall and CPU seconds (the spaCy process included) by stage."""
    STAGES.clear()
    ENCODED.clear()
    w, c, spacy = time.perf_counter(), time.process_time(), child_cpu()
    fn()
    wall, spacy = time.perf_counter() - w, child_cpu() - spacy
    cpu = time.process_time() - c + spacy
    STAGES["spaCy parse, in a second process alongside the above (its CPU)"] = [0.0, spacy]
    inner = [sum(v[i] for v in STAGES.values()) for i in (0, 1)]
    STAGES["other"] = [wall - inner[0], cpu - inner[1]]
    return {"label": label, "wall": wall, "cpu": cpu, "stages": {k: list(v) for k, v in STAGES.items()}}


def grouped(stages: dict[str, list[float]]) -> dict[str, float]:
    return {group: sum(v[0] for k, v in stages.items() if k.startswith(prefixes)) for group, prefixes in GROUPS.items()}


def report(run: dict, passages: int) -> None:
    from latency import table

    rate = passages / run["wall"]
    print(f"\n## {run['label']}: {run['wall']:.2f} s wall, {run['cpu']:.2f} CPU s, {rate:.1f} passages/s\n")
    groups = grouped(run["stages"])
    print(table([[k, v] for k, v in groups.items()], ["part (wall s)", "wall s"]))
    print()
    print(table([[k, v[0], v[1]] for k, v in run["stages"].items()], ["stage", "wall s", "CPU s"]))
    work = run.get("work")
    if work:
        print(f"\nencoded {work['passages_encoded']} of {work['passages']} passages, {work['sentences_encoded']} of "
              f"{work['sentences']} sentences; parsed {work['passages_parsed']} passages")  # fmt: skip


def add_and_remove(corpus_dir: Path, index_dir: Path, tmp: Path) -> list[dict]:
    """Add NEW_DOCUMENT to a copy of the corpus, then remove it, each in a new process (as `qa collection add`
    and `remove` run: imports and the model load count)."""
    corpus = Path(shutil.copytree(corpus_dir, tmp / "corpus", ignore=shutil.ignore_patterns("*.py", "__pycache__")))
    doc = tmp / "harbour-note.md"
    doc.write_text(NEW_DOCUMENT, encoding="utf-8")
    runs = []
    for step in ("add", "remove"):
        out = tmp / f"{step}.json"
        args = ["--step", step, "--corpus", str(corpus), "--out", str(index_dir), "--doc", str(doc), "--json", str(out)]
        subprocess.run([sys.executable, __file__, *args], check=True)
        runs.append(json.loads(out.read_text()))
    return runs


def step(name: str, corpus: Path, index_dir: Path, doc: Path) -> dict:
    """One add or remove (qa.collection), timed by stage; the process's own wall time since it started too."""
    from index.reuse import REUSE_EXTRA
    from index.store import SearchIndex
    from qa.collection import add_documents, remove_documents

    instrument()
    if name == "add":
        run = measure(
            f"add one {doc.stat().st_size} B document", lambda: add_documents([doc], corpus, index_dir, progress=False)
        )
    else:
        run = measure("remove it", lambda: remove_documents([doc.name], corpus, index_dir, progress=False))
    run["process_wall"] = time.perf_counter() - T_START
    run["work"] = SearchIndex.load(index_dir).extra(REUSE_EXTRA)["work"]
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--out", type=Path, help="index directory [default: a temporary one, removed]")
    ap.add_argument("--backend", choices=["onnx-int8", "onnx", "torch"])
    ap.add_argument("--cold-export", action="store_true", help="export the ONNX encoder anew (empty cache)")
    ap.add_argument("--add", action="store_true", help="then time adding one small document, and removing it")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--step", choices=["add", "remove"], help=argparse.SUPPRESS)  # --add's own processes
    ap.add_argument("--doc", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.step:
        args.json.write_text(json.dumps(step(args.step, args.corpus, args.out, args.doc)))
        return 0
    if args.backend:
        os.environ["QA_ENCODER_BACKEND"] = args.backend
    tmp = tempfile.TemporaryDirectory(prefix="qa-bench-build-")
    if args.cold_export:
        os.environ["QA_CACHE_DIR"] = str(Path(tmp.name) / "cache")
    out = args.out or Path(tmp.name) / "index"

    w, c = time.perf_counter(), time.process_time()
    from latency import machine, table

    import qa.build as qe
    from corpus.ingest import CORPUS_DIR
    from index.reuse import REUSE_EXTRA
    from index.store import SearchIndex

    imports = [time.perf_counter() - w, time.process_time() - c]
    instrument()
    corpus = args.corpus or CORPUS_DIR
    full = measure(
        "full build (build_default_index, from scratch)",
        lambda: qe.build_default_index(corpus, out, progress=False, reuse=False),
    )
    total_s, total_cpu = time.perf_counter() - T_START, time.process_time() - C_START + child_cpu()
    index = SearchIndex.load(out)
    n, full["work"] = len(index), index.extra(REUSE_EXTRA)["work"]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

    print(f"# build  {machine()}")
    backend = index.manifest["encoder"]["backend"]
    sentences, mib = full["work"]["sentences"], size / 2**20
    print(f"\n{n} passages, {sentences} sentences, encoder backend {backend}, index {mib:.1f} MiB\n")
    rows = [["whole process (interpreter start to index swapped in)", total_s, total_cpu, n / total_s]]
    rows.append(["imports", imports[0], imports[1], ""])
    print(table(rows, ["", "wall s", "CPU s", "passages/s"]))
    runs = [full]
    report(full, n)
    if args.add:
        for run in add_and_remove(corpus, out, Path(tmp.name)):
            runs.append(run)
            report(run, run["work"]["passages"])
            load, whole = grouped(run["stages"])["model load"], run["process_wall"]
            print(
                f"\nbeyond model load: {run['wall'] - load:.2f} s (model load, torch's import included: {load:.2f} s;"
            )
            print(f"the whole process, from interpreter start: {whole:.2f} s)")
    if args.json:
        result = {"machine": machine(), "passages": n, "total_s": total_s, "runs": runs}
        args.json.write_text(json.dumps(result, indent=1))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
