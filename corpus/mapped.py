"""Text derived from a raw file by deletions and small replacements, remembering where each character came from.

Cleaning never rewrites prose: it deletes chrome and markers and folds white space. Every character of the
cleaned text keeps the raw offset it came from, so any span of cleaned text maps back to exact raw offsets.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

Replacement = str | Callable[[re.Match], str]


class MappedText:
    __slots__ = ("text", "pos", "raw_len")

    def __init__(self, text: str, pos: np.ndarray, raw_len: int):
        self.text = text
        self.pos = pos  # pos[i] = raw offset of text[i]
        self.raw_len = raw_len

    @classmethod
    def of(cls, raw: str) -> MappedText:
        return cls(raw, np.arange(len(raw), dtype=np.int64), len(raw))

    def __len__(self) -> int:
        return len(self.text)

    def sub(self, pattern: str | re.Pattern, repl: Replacement = "", flags: int = 0) -> MappedText:
        """Replace each match by `repl` (a string or a function of the match).

        New characters map to the raw offset where the match began.
        """
        rx = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        literal = isinstance(repl, str) and "\\" not in repl  # no group references: skip expand()
        new = (lambda m: repl) if literal else repl if callable(repl) else (lambda m: m.expand(repl))
        return self.replace([(*m.span(), new(m)) for m in rx.finditer(self.text)])

    def replace(self, spans: list[tuple[int, int, str]]) -> MappedText:
        """Replace each (a, b, new) of sorted, non-overlapping spans of the text (a == b inserts `new`); new
        characters map to the raw offset of text[a], as in `sub`."""
        parts: list[str] = []
        offsets: list[np.ndarray] = []
        last = 0
        for a, b, new in spans:
            parts.append(self.text[last:a])
            offsets.append(self.pos[last:a])
            if new:
                anchor = self.pos[a] if a < len(self.pos) else self.raw_len
                parts.append(new)
                offsets.append(np.full(len(new), anchor, dtype=np.int64))
            last = b
        if not spans:
            return self
        parts.append(self.text[last:])
        offsets.append(self.pos[last:])
        return MappedText("".join(parts), np.concatenate(offsets), self.raw_len)

    def slice(self, a: int, b: int) -> MappedText:
        return MappedText(self.text[a:b], self.pos[a:b], self.raw_len)

    def raw_span(self, a: int, b: int) -> tuple[int, int]:
        """Raw [start, end) covering cleaned text[a:b]."""
        if b <= a:
            p = int(self.pos[a]) if a < len(self.pos) else self.raw_len
            return p, p
        return int(self.pos[a]), int(self.pos[b - 1]) + 1
