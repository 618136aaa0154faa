"""Fit the re-ranking weights on every collection's dev questions, with leave-one-collection-out validation.

    python bench/fit_ranker.py                 # needs the indexes bench/eval_all.py keeps under var/eval/
    python bench/fit_ranker.py --l2 0.01       # another penalty

For every answerable question the engine's own candidate pool is taken (dense and lexical search), with each
candidate's features as the engine computes them (qa/retrieve.py Candidate: passage cosine, best-sentence cosine,
BM25 share, term coverage, holder match) and a label: the passage covers a gold quote (run_eval.py's rule) or, on
SciFact, lies in a relevant document. Our own questions over the demo collection join the demo fold.

Model: a linear score w.x over those features plus context (the mean score of a passage's neighbours, which
depends on the weights). Default fit (--method ascent): coordinate ascent on the macro MRR@10 itself (Metzler and
Croft 2007, as RankLib's linear model). --method logistic: pairwise logistic loss (RankNet with a linear scorer)
with an L2 penalty, every question weighing the same, context fitted in two rounds.

It prints, per held-out collection, the MRR@10 of the re-ranked pool with the weights fitted on the other
collections against the weights in use, then the weights fitted on all collections: those go to qa/tuning.py
with the date and these figures, or, where they match the weights in use within noise, the figures go there as
evidence that those hold. The pool's MRR leaves out copy folding and viewpoint diversity; confirm a change with
bench/eval_all.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import eval_all  # noqa: E402

BASE = ("dense", "sentence", "lexical", "coverage", "holder")
OWN_QUESTIONS = ROOT / "bench" / "own_questions.jsonl"


@dataclass
class Question:
    collection: str
    x: np.ndarray  # candidates x BASE features
    neighbours: list[np.ndarray]  # per candidate: its neighbours' BASE features (0 to 2 rows)
    y: np.ndarray  # 1 where the candidate answers


def spans(passage) -> list[tuple[str, int, int]]:
    return [(passage.file, passage.start, passage.end)] + [(s.file, s.start, s.end) for s in passage.also_in]


def covers(passage, gold: tuple[str, int, int]) -> bool:
    gfile, gs, ge = gold
    return any(f == gfile and min(e, ge) - max(s, gs) >= 0.5 * (ge - gs) for f, s, e in spans(passage))


def features(c) -> list[float]:
    return [getattr(c, name) for name in BASE]


def fitting_questions(c: eval_all.Collection, run_eval):
    """(question record, its normalised text, answers(passage) -> 1.0 or 0.0) for every dev question of the
    collection, and for the demo our own questions too."""
    questions = run_eval.load_questions(c.questions)
    if c.name == "demo" and OWN_QUESTIONS.exists():
        questions += run_eval.load_questions(OWN_QUESTIONS)
    corpus = run_eval.Corpus(c.corpus)
    for q in questions:
        gold = [corpus.locate(g["file"], g["quote"]) for g in q.get("gold", [])]
        files = {g["file"] for g in q.get("gold", [])}

        def answers(p, q=q, gold=gold, files=files) -> float:
            if not q["answerable"]:
                return 0.0
            return float(p.file in files) if c.documents else float(any(covers(p, g) for g in gold))

        yield q, " ".join(q["question"].split()), answers


def collect(c: eval_all.Collection, engine, run_eval) -> list[Question]:
    from qa.engine import POOL
    from qa.retrieve import Candidate

    retriever, index = engine.retriever, engine.index
    out = []
    for q, text, answers in fitting_questions(c, run_eval):
        if not q["answerable"] or not q.get("gold"):
            continue
        qvec = index.encode_query(text)
        cands = retriever.candidates(text, qvec, POOL, None)
        retriever._fuse(text, qvec, cands, engine.weights)
        near = {k.pos: retriever.neighbours(k.pos) for k in cands}
        beside = [Candidate(n) for n in sorted({n for ns in near.values() for n in ns} - near.keys())]
        retriever._fuse(text, qvec, beside, engine.weights)
        row = {k.pos: features(k) for k in cands + beside}
        out.append(
            Question(
                c.name,
                np.array([features(k) for k in cands]),
                [np.array([row[n] for n in near[k.pos]]).reshape(-1, len(BASE)) for k in cands],
                np.array([answers(index.passages[k.pos]) for k in cands]),
            )
        )
    return out


def with_context(q: Question, w_base: np.ndarray) -> np.ndarray:
    """The question's feature matrix with a context column: the neighbours' mean base score."""
    ctx = np.array([float((n @ w_base).mean()) if len(n) else 0.0 for n in q.neighbours])
    return np.column_stack([q.x, ctx])


def pair_differences(questions: list[Question], xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows x_pos - x_neg for every answering/non-answering pair of a question; each question's pairs weigh 1."""
    diffs, weights = [], []
    for q, x in zip(questions, xs, strict=True):
        pos, neg = x[q.y == 1], x[q.y == 0]
        if not len(pos) or not len(neg):
            continue
        d = (pos[:, None, :] - neg[None, :, :]).reshape(-1, x.shape[1])
        diffs.append(d)
        weights.append(np.full(len(d), 1.0 / len(d)))
    return np.vstack(diffs), np.concatenate(weights)


def fit_pairwise(d: np.ndarray, a: np.ndarray, l2: float, iterations: int = 50) -> np.ndarray:
    """Newton's method on sum_pairs a * log(1 + exp(-d.w)) + l2 * |w|^2 (convex, a few parameters)."""
    w = np.zeros(d.shape[1])
    scale = a.sum()
    for _ in range(iterations):
        margin = d @ w
        p = 1.0 / (1.0 + np.exp(np.clip(margin, -50, 50)))  # sigmoid(-margin)
        grad = -(d.T @ (a * p)) / scale + 2 * l2 * w
        hess = (d.T * (a * p * (1 - p))) @ d / scale + 2 * l2 * np.eye(d.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_logistic(questions: list[Question], l2: float) -> np.ndarray:
    """Base weights, then base + context weights with the context taken from the first fit."""
    w_base = fit_pairwise(*pair_differences(questions, [q.x for q in questions]), l2)
    w = fit_pairwise(*pair_differences(questions, [with_context(q, w_base) for q in questions]), l2)
    for _ in range(2):  # the context now comes from the full model's base part
        w = fit_pairwise(*pair_differences(questions, [with_context(q, w[:-1]) for q in questions]), l2)
    return w


def macro_mrr(questions: list[Question], w: np.ndarray) -> float:
    """Mean over collections of their MRR@10: every collection weighs the same, whatever its size."""
    groups = {}
    for q in questions:
        groups.setdefault(q.collection, []).append(q)
    return float(np.mean([mrr(g, w) for g in groups.values()]))


GRID = np.round(np.linspace(0, 1, 21), 2)


def fit_coordinate_ascent(questions: list[Question], start: np.ndarray, rounds: int = 5) -> np.ndarray:
    """Coordinate ascent on the metric itself (Metzler and Croft 2007; RankLib's linear model): each weight in
    turn is set to the grid value that maximises the macro MRR@10 with the others fixed, until none moves.
    The base weights are kept summing to one (ranking ignores scale); context is a share of the base score."""
    w = start.copy()
    w[:-1] /= w[:-1].sum()
    best = macro_mrr(questions, w)
    for _ in range(rounds):
        moved = False
        for i in range(len(w)):
            for value in GRID:
                trial = w.copy()
                trial[i] = value
                if i < len(w) - 1:
                    if trial[:-1].sum() == 0:
                        continue
                    trial[:-1] /= trial[:-1].sum()
                score = macro_mrr(questions, trial)
                if score > best + 1e-9:
                    best, w, moved = score, trial, True
        if not moved:
            break
    return w


def fit(questions: list[Question], method: str, l2: float, start: np.ndarray) -> np.ndarray:
    if method == "logistic":
        return fit_logistic(questions, l2)
    return fit_coordinate_ascent(questions, start)


def mrr(questions: list[Question], w: np.ndarray) -> float:
    scores = []
    for q in questions:
        s = with_context(q, w[:-1]) @ w
        order = np.argsort(-s, kind="stable")[:10]
        hits = np.flatnonzero(q.y[order] == 1)
        scores.append(1.0 / (hits[0] + 1) if len(hits) else 0.0)
    return float(np.mean(scores))


def current_weights() -> np.ndarray:
    from qa.tuning import Weights

    w = Weights()
    return np.array([getattr(w, name) for name in BASE] + [w.context])


def normalised(w: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Ranking ignores scale: show the weights on the scale of the ones in use (same sum of base weights)."""
    return w * (like[:-1].sum() / w[:-1].sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="demo,squad2,perspectrum,scifact")
    ap.add_argument("--method", choices=["ascent", "logistic"], default="ascent")
    ap.add_argument("--l2", type=float, default=1e-3, help="penalty of the logistic fit")
    ap.add_argument("--out", type=Path, help="write the fitted weights and fold figures here (JSON)")
    args = ap.parse_args()
    run_eval = eval_all.load_module(eval_all.EVAL_DIR / "run_eval.py")
    questions: list[Question] = []
    for c, engine in eval_all.engines(args.sets.split(",")):
        found = collect(c, engine, run_eval)
        print(f"[{c.name}] {len(found)} questions, {sum(int(q.y.any()) for q in found)} with an answer in the pool")
        questions += found

    now = current_weights()
    names = list(BASE) + ["context"]
    report = {"method": args.method, "l2": args.l2, "features": names, "folds": {}}
    print(f"\n{'held out':<12} {'in use':>7} {'fitted':>7}   weights fitted on the others ({', '.join(names)})")
    for held in dict.fromkeys(q.collection for q in questions):
        train = [q for q in questions if q.collection != held]
        test = [q for q in questions if q.collection == held]
        w = fit(train, args.method, args.l2, now)
        before, after = mrr(test, now), mrr(test, w)
        shown = ", ".join(f"{v:.3f}" for v in normalised(w, now))
        print(f"{held:<12} {before:7.3f} {after:7.3f}   {shown}")
        report["folds"][held] = {"mrr_in_use": before, "mrr_fitted": after, "weights": normalised(w, now).tolist()}
    w_all = normalised(fit(questions, args.method, args.l2, now), now)
    print(f"\nfitted on all: {dict(zip(names, np.round(w_all, 4).tolist(), strict=True))}")
    report["weights"] = dict(zip(names, w_all.tolist(), strict=True))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
