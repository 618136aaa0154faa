"""Fit the highlight's weights (qa/tuning.py HighlightWeights) on every collection whose gold is a sentence.

    python bench/fit_highlight.py            # demo and SQuAD 2.0 dev questions, indexes from bench/eval_all.py

For each answerable question, the engine's own top passage; when it holds a gold quote, the question's
highlight is scored (run_eval.py's highlight_covers: the first highlight covers half of a gold quote) for every
pair of weights on a grid: `coverage` (the sentence's share of the question's terms) and `answer_type` (the
sentence states an answer of the kind asked: qa/answer_type.py). Reported: each collection's highlight@1 for the
weights in use, for the weights fitted on the other collection (leave one collection out), and for the weights
fitted on both; ties go to the smaller weights. PERSPECTRUM's gold is a whole perspective and SciFact's a whole
abstract, so they say nothing about which sentence answers.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_all import EVAL_DIR, engines, load_module  # noqa: E402

from qa import answer_type  # noqa: E402
from qa.retrieve import Candidate  # noqa: E402
from qa.schema import AskRequest  # noqa: E402
from qa.tuning import HIGHLIGHT  # noqa: E402

SETS = ("demo", "squad2")
COVERAGE = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
ANSWER_TYPE = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


def outcomes(c, engine, run_eval) -> np.ndarray:
    """Questions x grid: 1 where the highlight of the top passage covers a gold quote."""
    corpus = run_eval.Corpus(c.corpus)
    grid = list(itertools.product(COVERAGE, ANSWER_TYPE))
    rows = []
    for q in run_eval.load_questions(c.questions):
        if not q["answerable"]:
            continue
        question = " ".join(q["question"].split())
        answer = engine.ask(AskRequest(question=question, top_k=1)).model_dump(mode="json")
        gold = [corpus.locate(g["file"], g["quote"]) for g in q.get("gold", [])]
        if not answer["passages"] or not any(run_eval.covers(answer["passages"][0], g) for g in gold):
            continue  # the highlight of a wrong passage cannot be right
        top = answer["passages"][0]
        cand = Candidate(engine.index.position[top["id"]])
        qvec = engine.index.encode_query(question)
        terms, kind = engine.retriever.query_terms(question), answer_type.asked(question)
        row = []
        for cov, typ in grid:
            w = replace(HIGHLIGHT, coverage=cov, answer_type=typ)
            hs = [h.model_dump() for h in engine._highlights(cand, qvec, terms, kind, w)]
            row.append(any(run_eval.highlight_covers({**top, "highlights": hs}, g) for g in gold))
        rows.append(row)
    return np.array(rows, float)


def best(scores: np.ndarray) -> int:
    """The grid point with the highest mean; ties to the smallest weights (the grid is in increasing order)."""
    return int(np.flatnonzero(scores >= scores.max() - 1e-12)[0])


def main() -> int:
    run_eval = load_module(EVAL_DIR / "run_eval.py")
    grid = list(itertools.product(COVERAGE, ANSWER_TYPE))
    current = grid.index((HIGHLIGHT.coverage, HIGHLIGHT.answer_type))
    results = {c.name: outcomes(c, engine, run_eval) for c, engine in engines(list(SETS))}
    means = {name: r.mean(axis=0) for name, r in results.items()}
    both = best(sum(means.values()) / len(means))
    print(f"fitted on both: coverage {grid[both][0]}, answer_type {grid[both][1]}")
    for name, r in results.items():
        others = best(sum(m for n, m in means.items() if n != name) / (len(means) - 1))
        print(
            f"{name:8} questions {len(r):3}  in use {means[name][current]:.3f}  "
            f"fitted on the other {means[name][others]:.3f} (coverage {grid[others][0]}, answer_type "
            f"{grid[others][1]})  fitted on both {means[name][both]:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
