"""Map character offsets in a passage's cleaned text back to raw-file offsets.

Cleaning only deletes and folds, so the words of the text appear in order in the raw span: align them
greedily and carry offsets through the aligned words.
"""

from __future__ import annotations

import re

WORD = re.compile(r"\w+")


def word_alignment(text: str, raw: str, raw_start: int) -> list[tuple[int, int, int, int]]:
    """For each word of `text`: (text start, text end, raw start, raw end), raw offsets absolute."""
    raw_words = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(raw)]
    out, j = [], 0
    for m in WORD.finditer(text):
        w = m.group().lower()
        while j < len(raw_words) and raw_words[j][2] != w:
            j += 1
        if j == len(raw_words):
            break
        out.append((m.start(), m.end(), raw_start + raw_words[j][0], raw_start + raw_words[j][1]))
        j += 1
    return out


def to_raw(alignment: list[tuple[int, int, int, int]], start: int, end: int) -> tuple[int, int] | None:
    """Raw span covering the words of text[start:end], or None if it holds no aligned word."""
    inside = [a for a in alignment if a[1] > start and a[0] < end]
    if not inside:
        return None
    return inside[0][2], inside[-1][3]
