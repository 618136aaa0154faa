"""Abstention: answer only when the corpus supports an answer.

A fixed cosine threshold does not separate relevant from unrelated questions, so the decision combines the
best sentence's similarity with whether the question's key terms occur in the best passages at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from qa.retrieve import Candidate, Retriever

MIN_SENTENCE_COS = 0.35
MIN_COVERAGE = 0.5
TOP = 3


@dataclass
class Decision:
    answered: bool
    reason: str


def decide(question: str, ranked: list[Candidate], retriever: Retriever) -> Decision:
    if not ranked:
        return Decision(False, "no passage in the collection matches the question")
    top = ranked[:TOP]
    best_sentence = max(c.sentence for c in top)
    terms = retriever.query_terms(question)
    weights = {t: retriever.idf(t) for t in terms}
    covered = set().union(*(retriever.passage_terms[c.pos] for c in top))
    coverage = sum(w for t, w in weights.items() if t in covered) / (sum(weights.values()) or 1.0)
    missing = [t for t in terms if t not in covered and retriever.df.get(t, 0) == 0]
    if best_sentence < MIN_SENTENCE_COS:
        return Decision(False, "the collection holds nothing close to this question")
    if coverage < MIN_COVERAGE:
        what = f" (absent: {', '.join(missing[:3])})" if missing else ""
        return Decision(False, f"the closest passages do not contain the question's key terms{what}")
    return Decision(True, "supported by the passages below")
