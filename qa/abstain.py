"""Abstention: why the collection does not support an answer, in words and as a code.

Whether it does is decided by the support model (qa/support.py): the answer is answered when one of the best
passages supports it. This module says why not, from the evidence a person can check: the question's focus word
never occurs in the collection ("what illness..."), a how-many question gets no number from the closest sentences,
no sentence is close to the question, or the closest passages lack its key terms. The numbers below only choose
the words of the reason; they decide nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from qa.retrieve import Candidate, Retriever
from qa.schema import ReasonCode

MIN_SENTENCE_COS = 0.35
MIN_COVERAGE = 0.3
TOP = 3
QUANTITY_TOP = 10  # passages searched for a sentence that states the quantity asked for
MIN_QUANTITY_COVERAGE = 0.45  # of the question's key terms (IDF-weighted) in that sentence
ASKS_QUANTITY = re.compile(r"^\s*(?:how many|how much)\b", re.IGNORECASE)
NUMBER_WORDS = (
    "two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundreds? thousands? millions? "
    "billions? dozens?"
).split()
NUMBER = re.compile(r"\b(?:\d[\d,.]*%?|" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
YEAR = re.compile(r"^(?:1[0-9]|20)\d\d$")


def states_quantity(sentence: str) -> bool:
    """Whether a sentence gives a number other than a year ("700,000 people", "thirteen volumes", "90%")."""
    return any(not YEAR.match(m.group(0)) for m in NUMBER.finditer(sentence))


AUX = r"(?:did|does|do|was|were|is|are|has|have|had|would|could|should|can|will)"
# The noun phrase a wh-question asks about: "what illness did…", "how many Polish officers were…".
FOCUS = re.compile(
    r"\b(?:what|which|how many|how much)\s+(?!" + AUX + r"\b)((?:[\w'-]+\s+){0,3}?[\w'-]+?)\s+(?:" + AUX
    + r"|of|in|for|to|on|about|from|by)\b"
)  # fmt: skip


@dataclass
class Decision:
    answered: bool
    code: ReasonCode  # one per branch of explain(): for programs
    reason: str  # the same, for people


def focus_word(question: str) -> str | None:
    m = FOCUS.search(question.lower())
    return m.group(1).split()[-1] if m else None


def inflections(word: str) -> set[str]:
    forms = {word, word + "s", word + "es"}
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


def is_unknown(word: str, retriever: Retriever) -> bool:
    """The collection never uses the word in any form (stems are too loose: "illness" -> "ill"),
    allowing for typos ("divisons")."""
    if inflections(word) & retriever.words:
        return False
    same_initial = retriever.by_initial.get(word[:1], ())
    return process.extractOne(word, same_initial, scorer=fuzz.ratio, score_cutoff=85) is None


def explain(question: str, ranked: list[Candidate], retriever: Retriever, answered: bool) -> Decision:
    """The decision with its reason: `answered` comes from the support model."""
    if not ranked:
        return Decision(False, ReasonCode.no_passages, "no passage in the collection matches the question")
    if answered:
        return Decision(True, ReasonCode.answered, "supported by the passages marked as supporting")
    focus = focus_word(question)
    if focus and is_unknown(focus, retriever):
        return Decision(False, ReasonCode.focus_word_missing, f"the collection never mentions “{focus}”")
    if ASKS_QUANTITY.match(question) and not _quantity_stated(question, ranked[:QUANTITY_TOP], retriever):
        return Decision(False, ReasonCode.no_number, "the closest passages give no number for what the question asks")
    top = ranked[:TOP]
    if max(c.sentence for c in top) < MIN_SENTENCE_COS:
        return Decision(False, ReasonCode.off_topic, "the collection holds nothing close to this question")
    covered = set().union(*(retriever.passage_terms[c.pos] for c in top))
    if retriever.coverage(retriever.query_terms(question), covered) < MIN_COVERAGE:
        reason = "the closest passages do not contain the question's key terms"
        return Decision(False, ReasonCode.key_terms_missing, reason)
    return Decision(False, ReasonCode.no_support, "no passage supports an answer closely enough")


def _quantity_stated(question: str, ranked: list[Candidate], retriever: Retriever) -> bool:
    terms = retriever.query_terms(question)
    for c in ranked:
        a, b = retriever.sentence_range(c.pos)
        for row in range(a, b):
            covers = retriever.coverage(terms, retriever.sentence_terms[row]) >= MIN_QUANTITY_COVERAGE
            if covers and states_quantity(retriever.sentence_texts[row]):
                return True
    return False
