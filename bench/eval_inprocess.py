"""Score the engine in-process with ../shared/eval/run_eval.py's own scoring (no HTTP), for ablations.

    python bench/eval_inprocess.py --index var/index [--fusion rrf] [--diversity mmr] [--no-diversify] [--misses]

The figures match `run_eval.py --serve` except latency, which here excludes HTTP and JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL_DIR = ROOT.parent / "shared" / "eval"


def load_run_eval():
    spec = importlib.util.spec_from_file_location("run_eval", EVAL_DIR / "run_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=ROOT / "var" / "index")
    ap.add_argument("--questions", type=Path, default=EVAL_DIR / "dev.jsonl")
    ap.add_argument("--fusion", choices=["convex", "rrf"], default="convex")
    ap.add_argument("--weights", help="dense,sentence,lexical,coverage,holder,context")
    ap.add_argument("--no-diversify", action="store_true")
    ap.add_argument("--diversity", choices=["quota", "mmr"], default="quota")
    ap.add_argument("--misses", action="store_true")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from ablations import use_mmr, use_rrf

    from qa.engine import Engine
    from qa.schema import AskRequest

    run_eval = load_run_eval()
    engine = Engine.load(args.index)
    if args.fusion == "rrf":
        use_rrf(engine)
    if args.diversity == "mmr":
        use_mmr(engine)
    if args.weights:
        w = [float(x) for x in args.weights.split(",")]
        for name, value in zip(["dense", "sentence", "lexical", "coverage", "holder", "context"], w, strict=False):
            setattr(engine.weights, name, value)

    def ask(url, question, top_k, timeout):
        t0 = time.perf_counter()
        resp = engine.ask(AskRequest(question=question, top_k=top_k, diversify=not args.no_diversify))
        return json.loads(resp.model_dump_json()), (time.perf_counter() - t0) * 1000

    run_eval.ask = ask
    questions = run_eval.load_questions(args.questions)
    result = run_eval.evaluate("in-process", questions, run_eval.Corpus(EVAL_DIR.parent / "corpus"), 10, 30)
    if args.misses:
        text = {q["id"]: q["question"] for q in questions}
        for r in result["rows"]:
            if (r["answerable"] and (r["rank"] is None or r["rank"] > 1)) or (not r["answerable"] and r["answered"]):
                print(
                    f"MISS {r['id']} [{r['type']}] rank={r.get('rank')} answered={r.get('answered')} "
                    f"hl={r.get('highlight')} :: {text[r['id']]}"
                )
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
