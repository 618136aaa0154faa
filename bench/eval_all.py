"""Every figure on every collection, with 95 % bootstrap intervals, the macro average, and a paired comparison
against a saved run. The one command a ranking, abstention or viewpoint change is judged by.

    python bench/eval_all.py                                   # all four collections' dev questions (+ demo-bare)
    python bench/eval_all.py --sets demo,squad2 --save mine    # a subset; keep this run as bench/runs/mine.json
    python bench/eval_all.py --baseline landed                 # compare with bench/runs/landed.json
    python bench/eval_all.py --sets demo --store postgresql://… --baseline files   # the PostgreSQL store

Collections: the demo collection (the bundled corpus, ../shared/eval/dev.jsonl), and ../shared/eval/external's
SQuAD 2.0, PERSPECTRUM and BEIR SciFact (each its corpus folder and dev.jsonl). Also reported, outside the
macro average: demo-bare, the demo's files without their manifest (as a user's files arrive), on the demo's
questions. Scoring is the shared scorers' own: run_eval.py's for passage figures, beir_eval.py's nDCG@10 (top 50
passages, documents by their best passage) for SciFact. Questions are asked in-process (no HTTP), so latency is
not reported here: bench/latency.py.

Each collection's index is built once and kept under var/eval/, keyed by the corpus's contents. A cached index
built by other ingestion or indexing code (corpus/, index/, qa/attribution.py, qa/build.py) is used with a warning;
--rebuild builds it again.

Intervals: percentile bootstrap over questions (2,000 resamples, fixed seed). A comparison with a baseline
resamples the per-question differences of the questions both runs share (a paired bootstrap); a change is
"worse" on a collection when its whole interval lies below zero. Ship a change only if the macro average goes up
and no collection is worse.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVAL_DIR = ROOT.parent / "shared" / "eval"
EXTERNAL = EVAL_DIR / "external"
RUNS = ROOT / "bench" / "runs"
CACHE = ROOT / "var" / "eval"
# The source that decides what an index holds: a cached index built by other code is flagged.
BUILD_SOURCES = ("corpus", "index", "qa/attribution.py", "qa/build.py")
RESAMPLES = 2000


@dataclass(frozen=True)
class Collection:
    name: str
    corpus: Path
    questions: Path
    primary: str  # the figure the macro average takes from this collection
    documents: bool = False  # scored at document level, as BEIR scores it
    in_macro: bool = True  # False: reported, but not one of the four collections the macro average is over


def collections() -> dict[str, Collection]:
    sys.path.insert(0, str(ROOT))
    from corpus.ingest import CORPUS_DIR

    def external(name: str, primary: str, documents: bool = False) -> Collection:
        return Collection(name, EXTERNAL / name / "corpus", EXTERNAL / name / "dev.jsonl", primary, documents)

    demo = Collection("demo", CORPUS_DIR, EVAL_DIR / "dev.jsonl", "mrr@10")
    found = [demo, external("squad2", "mrr@10"), external("perspectrum", "mrr@10")]
    found.append(external("scifact", "ndcg@10", documents=True))
    # The demo's files as a user's files arrive, without the manifest written for them: what ingestion infers.
    found.append(Collection("demo-bare", bare_copy(CORPUS_DIR), EVAL_DIR / "dev.jsonl", "mrr@10", in_macro=False))
    return {c.name: c for c in found}


def bare_copy(corpus: Path) -> Path:
    """The corpus's documents without its manifest, under var/eval/ (made once)."""
    out = CACHE / f"{corpus.name}-bare-corpus"
    if not out.is_dir():
        tmp = out.with_name(out.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for f in corpus.glob("*.txt"):
            (tmp / f.name).write_bytes(f.read_bytes())
        tmp.rename(out)
    return out


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digest_tree(paths: list[Path], h) -> None:
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.suffix in (".pyc",) or "__pycache__" in f.parts:
                continue
            h.update(f.name.encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    digest_tree(paths, h)
    return h.hexdigest()[:16]


def corpus_key(corpus: Path) -> str:
    """The documents load_corpus would read, and the manifest that describes them."""
    from corpus.ingest import corpus_files

    h = hashlib.sha256(json.dumps(corpus_files(corpus), sort_keys=True).encode())
    if (corpus / "manifest.toml").exists():
        h.update((corpus / "manifest.toml").read_bytes())
    return h.hexdigest()[:16]


def ensure_index(c: Collection, rebuild: bool) -> Path:
    from qa.build import build_default_index

    path = CACHE / f"{c.name}-{corpus_key(c.corpus)}"
    sources = digest([ROOT / s for s in BUILD_SOURCES if (ROOT / s).exists()])
    stamp = path.with_suffix(".sources")
    if rebuild or not (path / "manifest.json").exists():
        t0 = time.perf_counter()
        print(f"[{c.name}] building the index at {path} ...", file=sys.stderr, flush=True)
        build_default_index(c.corpus, path, progress=True)
        stamp.write_text(sources)
        print(f"[{c.name}] built in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    elif not stamp.exists() or stamp.read_text() != sources:
        print(f"[{c.name}] warning: the cached index was built by other ingestion code (--rebuild)", file=sys.stderr)
    return path


def per_question_passages(c: Collection, engine, run_eval) -> list[dict]:
    """run_eval.py's rows (rank, answered, highlight, coverage, holders per question), asked in-process."""
    from qa.schema import AskRequest

    answers = []

    def ask(url, question, top_k, timeout):
        answers.append(engine.ask(AskRequest(question=question, top_k=top_k)).model_dump(mode="json"))
        return answers[-1], 0.0

    run_eval.ask = ask
    questions = run_eval.load_questions(c.questions)
    corpus = run_eval.Corpus(c.corpus)
    result = run_eval.evaluate("in-process", questions, corpus, 10, 30)
    rows = []
    for r, answer in zip(result["rows"], answers, strict=True):
        verbatim = [run_eval.is_verbatim(p, corpus) for p in answer["passages"]]
        row = {"id": r["id"], "verbatim": sum(verbatim) / max(1, len(verbatim))}
        if r["answerable"]:
            rank = r["rank"]
            row |= {
                "hit@1": float(rank == 1),
                "hit@5": float(rank is not None and rank <= 5),
                "mrr@10": 1.0 / rank if rank and rank <= 10 else 0.0,
                "highlight@1": float(r["highlight"]),
                "answer_rate": float(r["answered"]),
            }
        else:
            row["abstain"] = float(not r["answered"])
        for key in ("coverage", "holders"):
            if key in r:
                row[{"coverage": "coverage@10", "holders": "holders@5"}[key]] = r[key]
        rows.append(row)
    return rows


def per_question_documents(c: Collection, engine, beir, run_eval) -> list[dict]:
    """beir_eval.py's per-query figures: documents ranked by their best passage among the top 50."""
    import re

    from qa.schema import AskRequest

    rows = []
    corpus = run_eval.Corpus(c.corpus)
    for q in beir.load_jsonl(c.questions):
        m = re.search(r"query-id (\S+?);", q.get("note", ""))
        qid = m.group(1) if m else q["id"]
        rel = {Path(g["file"]).stem: 1 for g in q["gold"]}
        passages = engine.ask(AskRequest(question=q["question"], top_k=50)).model_dump(mode="json")["passages"]
        docs = [d for d in beir.doc_ranking(passages) if d != qid]
        rows.append(
            {
                "id": q["id"],
                "ndcg@10": beir.ndcg_at(docs, rel, 10),
                "recall@10": beir.recall_at(docs, rel, 10),
                "mrr@10": beir.mrr_at(docs, rel, 10),
                "verbatim": sum(run_eval.is_verbatim(p, corpus) for p in passages) / max(1, len(passages)),
            }
        )
    return rows


def in_store(c: Collection, store: str, index: Path) -> str:
    """The collection in the PostgreSQL server of `store`, database <store's database>_<collection> (made if
    absent), written again from the cached index's vectors and parses: the comparison isolates the store."""
    import psycopg

    from qa.build import build_default_index

    name = re.sub(r"\W", "_", c.name)
    base = re.match(r"(postgres(?:ql)?://[^/?]*/)([^?]*)(.*)", store)
    url = f"{base[1]}{base[2] or 'postgres'}_{name}{base[3]}"
    with psycopg.connect(store, autocommit=True) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (f"{base[2] or 'postgres'}_{name}",)
        ).fetchone():
            conn.execute(f"CREATE DATABASE {base[2] or 'postgres'}_{name}")
    build_default_index(c.corpus, url, progress=False, reuse_from=index)
    return url


def engines(names: list[str], rebuild: bool = False, store: str | None = None):
    """(collection, its engine) for each name; an index is built when there is none (or on rebuild). With
    `store` (postgresql://...), the engine asks the collection written into that database server."""
    from qa.engine import Engine

    every = collections()
    for name in names:
        c = every[name]
        index = ensure_index(c, rebuild)
        yield c, Engine.load(in_store(c, store, index) if store else index, c.corpus)


def per_question(c: Collection, engine, run_eval, beir) -> list[dict]:
    if c.documents:
        return per_question_documents(c, engine, beir, run_eval)
    return per_question_passages(c, engine, run_eval)


def bootstrap(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    if len(values) < 2:
        return float("nan"), float("nan")
    means = values[rng.integers(0, len(values), size=(RESAMPLES, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(rows: list[dict]) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    metrics = sorted({k for r in rows for k in r if k != "id"})
    out = {}
    for m in metrics:
        values = np.array([r[m] for r in rows if m in r], dtype=float)
        lo, hi = bootstrap(values, rng)
        out[m] = {"mean": float(values.mean()), "lo": lo, "hi": hi, "n": len(values)}
    return out


def paired(rows: list[dict], base_rows: list[dict], metric: str) -> tuple[float, float, float, int] | None:
    base = {r["id"]: r[metric] for r in base_rows if metric in r}
    pairs = [(r[metric], base[r["id"]]) for r in rows if metric in r and r["id"] in base]
    if len(pairs) < 2:
        return None
    diff = np.array([a - b for a, b in pairs])
    lo, hi = bootstrap(diff, np.random.default_rng(1))
    return float(diff.mean()), lo, hi, len(pairs)


def evaluate(names: list[str], rebuild: bool = False, store: str | None = None) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_eval = load_module(EVAL_DIR / "run_eval.py")
    beir = load_module(EXTERNAL / "beir_eval.py")
    out = {"collections": {}}
    for c, engine in engines(names, rebuild, store):
        t0 = time.perf_counter()
        rows = per_question(c, engine, run_eval, beir)
        seconds = time.perf_counter() - t0
        out["collections"][c.name] = {"primary": c.primary, "rows": rows, "summary": summarise(rows), "ask_s": seconds}
        print(f"[{c.name}] {len(rows)} questions in {seconds:.0f} s", file=sys.stderr, flush=True)
    out["macro"] = macro(out, names)
    return out


def macro(run: dict, names: list[str]) -> float | None:
    """The mean of the primary figures of the collections in the macro average among `names`."""
    known = collections()
    cols = run["collections"]
    primaries = [cols[n]["summary"][cols[n]["primary"]]["mean"] for n in names if n in cols and known[n].in_macro]
    return float(np.mean(primaries)) if primaries else None


def fmt(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"


def report(run: dict, baseline: dict | None) -> str:
    lines = []
    for name, col in run["collections"].items():
        lines.append(f"\n{name} (macro figure: {col['primary']})")
        base = (baseline or {}).get("collections", {}).get(name)
        for metric, s in col["summary"].items():
            line = f"  {metric:<12} {fmt(s)}  n={s['n']}"
            if base and (d := paired(col["rows"], base["rows"], metric)):
                delta, lo, hi, n = d
                verdict = "worse" if hi < 0 else "better" if lo > 0 else "same"
                line += f"   vs baseline {delta:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict}"
            lines.append(line)
    known = collections()
    names = [n for n in run["collections"] if known[n].in_macro]
    if run["macro"] is None:
        return "\n".join(lines)
    primaries = ", ".join(f"{name} {run['collections'][name]['primary']}" for name in names)
    line = f"\nmacro average of {primaries}: {run['macro']:.3f}"
    if baseline and all(n in baseline["collections"] for n in names):
        base = macro(baseline, names)
        line += f" (baseline {base:.3f}, {run['macro'] - base:+.3f})"
    lines.append(line)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sets", default="demo,squad2,perspectrum,scifact,demo-bare", help="comma-separated collection names"
    )
    ap.add_argument("--save", metavar="NAME", help="keep this run as bench/runs/NAME.json")
    ap.add_argument("--baseline", metavar="NAME", help="compare with bench/runs/NAME.json (a saved run)")
    ap.add_argument("--rebuild", action="store_true", help="build the collections' indexes again")
    ap.add_argument("--store", metavar="URL", help="ask from a PostgreSQL server (postgresql://...) instead of files")
    args = ap.parse_args()
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = set(names) - set(collections())
    if unknown:
        ap.error(f"unknown collection(s): {', '.join(sorted(unknown))} (known: {', '.join(collections())})")
    baseline = None
    if args.baseline:
        path = RUNS / f"{args.baseline}.json"
        if not path.exists():
            ap.error(f"no saved run at {path}")
        baseline = json.loads(path.read_text(encoding="utf-8"))
    run = evaluate(names, args.rebuild, args.store)
    print(report(run, baseline))
    if args.save:
        RUNS.mkdir(parents=True, exist_ok=True)
        tmp = RUNS / f".{args.save}.json.tmp"
        tmp.write_text(json.dumps(run, indent=1), encoding="utf-8")
        tmp.replace(RUNS / f"{args.save}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
