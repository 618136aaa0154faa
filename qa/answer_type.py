"""What kind of answer a question asks for, and whether a sentence gives one of that kind.

Only the two kinds a sentence's surface shows reliably: a date ("when", "what year", "in which century") and a
quantity ("how many", "how much"). A "who" or "where" answer is a name, which nearly every sentence of an
encyclopedia holds, so matching it tells the answering sentence from its neighbours too seldom to be worth it.
The highlight (qa/engine.py) prefers a sentence of the asked kind by a weight fitted in qa/tuning.py.
"""

from __future__ import annotations

import re

from qa.abstain import ASKS_QUANTITY, states_quantity

DATE = "date"
QUANTITY = "quantity"

_ASKS_DATE = re.compile(
    r"^\s*(?:(?:in|by|since|until|from) )?(?:when\b|(?:what|which) (?:year|years|date|day|month|decade|century|era)\b)",
    re.IGNORECASE,
)
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
# A year (1000-2099, alone or as a range or decade), a month with a day or year, an ordinal century.
_STATES_DATE = re.compile(
    rf"\b(?:1\d{{3}}|20\d{{2}})s?\b|\b(?:{_MONTHS})\s+(?:\d{{1,2}}\b|(?:of )?\d{{4}})|\b\d{{1,2}}\s+(?:{_MONTHS})\b"
    r"|\b\d{1,2}(?:st|nd|rd|th) centur(?:y|ies)\b|\b(?:BC|BCE|AD)\b",
    re.IGNORECASE,
)


def asked(question: str) -> str | None:
    """The kind of answer the question asks for (DATE, QUANTITY), or None."""
    if _ASKS_DATE.match(question):
        return DATE
    if ASKS_QUANTITY.match(question):
        return QUANTITY
    return None


def gives(sentence: str, kind: str | None) -> bool:
    """Whether a sentence states an answer of that kind: a date, or a number that is not a year."""
    if kind == DATE:
        return _STATES_DATE.search(sentence) is not None
    if kind == QUANTITY:
        return states_quantity(sentence)
    return False
