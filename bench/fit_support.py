"""Fit the support model (qa/support.py) on every collection's dev questions, with leave-one-collection-out
validation, and choose its operating point.

    python bench/fit_support.py                # needs the indexes bench/eval_all.py keeps under var/eval/

Data: for every question, the engine's 10 best-ranked passages (Engine.rank) with qa/support.py's features; a
passage is labelled as supporting when it covers a gold quote (run_eval.py's rule) or, on SciFact, lies in a
relevant document; every passage of an unanswerable question is labelled as not supporting. Our own questions
over the demo collection join the demo fold.

Model: logistic regression on standardised features with a small L2 penalty, each question weighing the same.
Operating point: the highest threshold at which every training collection still answers at least 97 % of its
answerable questions (a question is answered when one of its 10 best passages reaches the threshold).

Prints each held-out collection's answer rate and abstention at the threshold chosen on the others, the curve
of both against the threshold per collection, and the model fitted on all collections: paste it into
qa/tuning.py with the date and these figures.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import eval_all  # noqa: E402
from fit_ranker import fitting_questions  # noqa: E402

MIN_ANSWER_RATE = 0.97


@dataclass
class Question:
    collection: str
    answerable: bool
    x: np.ndarray  # the features of the best passages (qa/support.py TOP)
    y: np.ndarray  # 1 where the passage supports an answer


def collect(c: eval_all.Collection, engine, run_eval) -> list[Question]:
    from qa import support

    out = []
    for q, text, answers in fitting_questions(c, run_eval):
        ranked, _ = engine.rank(text, engine.index.encode_query(text))
        top = ranked[: support.TOP]
        if top:
            x = support.features(text, top, engine.retriever, top[0].score)
            y = np.array([answers(engine.index.passages[k.pos]) for k in top])
            out.append(Question(c.name, q["answerable"], x, y))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float, iterations: int = 100) -> np.ndarray:
    """Newton's method for weighted logistic regression; the last coefficient is the intercept (not penalised)."""
    xb = np.column_stack([x, np.ones(len(x))])
    w = np.zeros(xb.shape[1])
    penalty = np.full(xb.shape[1], 2 * l2)
    penalty[-1] = 0.0
    total = weight.sum()
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -50, 50)))
        grad = xb.T @ (weight * (p - y)) / total + penalty * w
        hess = (xb.T * (weight * p * (1 - p))) @ xb / total + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


@dataclass
class Fitted:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float = 0.5

    def best(self, q: Question) -> float:
        z = ((q.x - self.mean) / self.scale) @ self.coef + self.intercept
        return float((1.0 / (1.0 + np.exp(-z))).max())


def fit(questions: list[Question], l2: float) -> Fitted:
    x = np.vstack([q.x for q in questions])
    y = np.concatenate([q.y for q in questions])
    weight = np.concatenate([np.full(len(q.y), 1.0 / len(q.y)) for q in questions])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    w = fit_logistic((x - mean) / scale, y, weight, l2)
    model = Fitted(mean, scale, w[:-1], float(w[-1]))
    model.threshold = operating_point(questions, model)
    return model


def by_collection(questions: list[Question]) -> dict[str, list[Question]]:
    groups: dict[str, list[Question]] = {}
    for q in questions:
        groups.setdefault(q.collection, []).append(q)
    return groups


def rates(questions: list[Question], model: Fitted, threshold: float) -> tuple[float, float | None]:
    """(answer rate on answerable questions, abstention on unanswerable ones; None when there are none)."""
    answered = [model.best(q) >= threshold for q in questions]
    answerable = [a for a, q in zip(answered, questions, strict=True) if q.answerable]
    unanswerable = [not a for a, q in zip(answered, questions, strict=True) if not q.answerable]
    return float(np.mean(answerable)), (float(np.mean(unanswerable)) if unanswerable else None)


def operating_point(questions: list[Question], model: Fitted) -> float:
    """The highest threshold at which every collection answers at least MIN_ANSWER_RATE of its answerable
    questions: abstain as much as that allows."""
    groups = by_collection(questions)
    candidates = sorted({round(model.best(q), 4) for q in questions if q.answerable}, reverse=True)
    for t in candidates:
        if all(rates(g, model, t)[0] >= MIN_ANSWER_RATE for g in groups.values()):
            return t
    return 0.0


def curve(questions: list[Question], model: Fitted) -> None:
    print("\ncurve (model fitted on all): threshold -> answer rate / abstention per collection")
    groups = by_collection(questions)
    print(f"  {'threshold':>9}  " + "  ".join(f"{name:>18}" for name in groups))
    for t in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6):
        cells = []
        for g in groups.values():
            answer, abstain = rates(g, model, t)
            cells.append(f"{answer:.3f} / {abstain:.3f}" if abstain is not None else f"{answer:.3f} /   -  ")
        print(f"  {t:9.2f}  " + "  ".join(f"{cell:>18}" for cell in cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="demo,squad2,perspectrum,scifact")
    ap.add_argument("--l2", type=float, default=1e-3)
    args = ap.parse_args()
    from qa.support import FEATURES

    run_eval = eval_all.load_module(eval_all.EVAL_DIR / "run_eval.py")
    questions: list[Question] = []
    for c, engine in eval_all.engines(args.sets.split(",")):
        questions += collect(c, engine, run_eval)
    groups = by_collection(questions)
    print(f"\n{'held out':<12} {'threshold':>9} {'answer_rate':>11} {'abstain':>8}   (model fitted on the others)")
    for held in groups:
        model = fit([q for q in questions if q.collection != held], args.l2)
        answer, abstain = rates(groups[held], model, model.threshold)
        shown = f"{abstain:8.3f}" if abstain is not None else "       -"
        print(f"{held:<12} {model.threshold:9.3f} {answer:11.3f} {shown}")
    model = fit(questions, args.l2)
    print("\nin-sample at the chosen threshold:")
    for name, g in groups.items():
        answer, abstain = rates(g, model, model.threshold)
        print(f"  {name:<12} answer_rate {answer:.3f}  abstain {abstain if abstain is None else round(abstain, 3)}")
    curve(questions, model)
    r = lambda v: tuple(round(float(x), 4) for x in v)  # noqa: E731
    print("\nSupportModel(")
    print(f"    features={FEATURES!r},")
    print(f"    mean={r(model.mean)},\n    scale={r(model.scale)},\n    coef={r(model.coef)},")
    print(f"    intercept={model.intercept:.4f},\n    threshold={model.threshold:.4f},\n)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
