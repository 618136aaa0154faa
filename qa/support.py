"""Whether a passage supports an answer to the question: one logistic model over the evidence it holds.

Each ranked passage gets a probability of support from the same features, whatever the collection: how close its
best sentence and the passage are to the question (cosines), how much of the question's key terms it and its
best sentence hold (IDF-weighted coverage), its BM25 share and its score's distance from the best passage's, and
two facts of the question that no passage can make up for: a focus word the collection never uses ("what
illness..."), and a how-many question that the passage's sentences give no number for. The answer is answered
when one of the best-ranked passages supports it.

The model's numbers are fitted across every collection's dev questions (bench/fit_support.py, leave one
collection out) and live in qa/tuning.py with where they came from.
"""

from __future__ import annotations

import numpy as np

from qa.abstain import ASKS_QUANTITY, focus_word, is_unknown, states_quantity
from qa.retrieve import Candidate, Retriever
from qa.tuning import SupportModel

TOP = 10  # the question is answered when one of its TOP best passages supports an answer
FEATURES = (
    "sentence",  # best cosine of the question and one sentence of the passage
    "dense",  # cosine of the question and the passage
    "lexical",  # BM25, as a share of the question's best BM25
    "coverage",  # IDF-weighted share of the question's terms in the passage
    "sentence_coverage",  # the same for the passage's best-covering sentence
    "margin",  # the passage's score minus the best passage's (0 for the best)
    "asks_quantity",  # the question asks how many / how much
    "quantity_stated",  # ... and a sentence of the passage gives a number, weighted by its term coverage
    "focus_missing",  # the collection never uses the word the question asks about
    "rarest_missing",  # IDF of the rarest question term the passage lacks, as a share of the highest IDF
    "unseen",  # IDF-weighted share of the question's terms the collection never uses
)


def question_facts(question: str, retriever: Retriever) -> tuple[bool, bool]:
    """(asks for a quantity, its focus word is unknown to the collection): the same for every passage."""
    focus = focus_word(question)
    return bool(ASKS_QUANTITY.match(question)), bool(focus and is_unknown(focus, retriever))


def features(question: str, cands: list[Candidate], retriever: Retriever, best_score: float) -> np.ndarray:
    """One row of FEATURES per candidate (candidates already scored by the retriever)."""
    asks_quantity, focus_missing = question_facts(question, retriever)
    terms = retriever.query_terms(question)
    unseen = 1.0 - retriever.coverage(terms, retriever.df.keys())
    rows = []
    for c in cands:
        a, b = retriever.sentence_range(c.pos)
        covered = [retriever.coverage(terms, retriever.sentence_terms[i]) for i in range(a, b)] or [0.0]
        numbers = [states_quantity(retriever.sentence_texts[i]) for i in range(a, b)] if asks_quantity else []
        quantity = max((cov for cov, n in zip(covered, numbers, strict=False) if n), default=0.0)
        rows.append(
            [
                c.sentence,
                c.dense,
                c.lexical,
                c.coverage,
                max(covered),
                c.score - best_score,
                float(asks_quantity),
                quantity,
                float(focus_missing),
                rarest_missing(terms, retriever.passage_terms[c.pos], retriever),
                unseen,
            ]
        )
    return np.array(rows, dtype=np.float64).reshape(-1, len(FEATURES))


def rarest_missing(terms: tuple[str, ...], have: frozenset[str], retriever: Retriever) -> float:
    """Annotators who write a question the text cannot answer often swap in one term the passage lacks."""
    return max((retriever.idf(t) for t in terms if t not in have), default=0.0) / retriever.idf("")


def probabilities(x: np.ndarray, model: SupportModel) -> np.ndarray:
    if model.features != FEATURES:
        raise ValueError("the support model was fitted on other features: re-run bench/fit_support.py")
    z = ((x - np.array(model.mean)) / np.array(model.scale)) @ np.array(model.coef) + model.intercept
    return 1.0 / (1.0 + np.exp(-z))
