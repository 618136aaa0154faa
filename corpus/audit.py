"""What ingestion leaves out of every passage, and the rule that leaves each piece out: `qa corpus audit`.

Nothing a reader of a work reads is lost: body text, headings, notes, captions, bylines and quote boxes all
become passages (of their kind). What is left out is chrome or apparatus, each piece by a named rule: page
menus and navboxes, markers and markup, reference entries and link lists, tables of contents. An audit lists
those pieces by rule, so a reader can check that no prose is among them; any non-space text no rule claims is
reported as unexplained.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corpus.ingest import CORPUS_DIR, Corpus, load_corpus

UNEXPLAINED = "unexplained (no rule: a bug)"
WORD = re.compile(r"\w")


@dataclass
class Piece:
    rule: str
    start: int  # raw
    end: int  # raw
    text: str


@dataclass
class FileAudit:
    file: str
    chars: int  # non-space characters of the raw text
    kept: int  # of them, in some passage (or a copy of one)
    kinds: dict[str, int] = field(default_factory=dict)  # passage kind -> passages
    dropped: list[Piece] = field(default_factory=list)  # maximal runs of raw text left out, by one rule each

    def by_rule(self) -> dict[str, list[Piece]]:
        out: dict[str, list[Piece]] = defaultdict(list)
        for p in self.dropped:
            out[p.rule].append(p)
        return dict(out)

    @property
    def unexplained(self) -> list[Piece]:
        """Left-out text with a word character that no rule claims."""
        return [p for p in self.dropped if p.rule == UNEXPLAINED and WORD.search(p.text)]


def audit(root: Path = CORPUS_DIR, files: list[str] | None = None) -> dict[str, FileAudit]:
    """Ingest a collection's files (all, or only `files`, with the collection's manifest) and audit each."""
    return audit_corpus(load_corpus(root, trace=True, only=set(files) if files else None))


def audit_corpus(corpus: Corpus) -> dict[str, FileAudit]:
    """The audit of each file of a corpus loaded with load_corpus(trace=True)."""
    if corpus.dropped is None:
        raise ValueError("the corpus was not loaded with trace=True")
    return {name: _audit_file(corpus, name, raw) for name, raw in corpus.texts.items()}


def _audit_file(corpus: Corpus, name: str, raw: str) -> FileAudit:
    n = len(raw)
    rule_of = np.full(n, -1, dtype=np.int64)  # -2: in a passage; >= 0: index into rules
    kinds: dict[str, int] = defaultdict(int)
    for p in corpus.passages:
        if p.file == name:
            kinds[p.kind] += 1
            for a, b in p.sentences:
                rule_of[a:b] = -2
        for s in p.also_in:
            if s.file == name:
                rule_of[s.start : s.end] = -2
    rules: list[str] = []
    index: dict[str, int] = {}
    for d in corpus.dropped.get(name, []):  # the first rule to claim a character is the one that dropped it
        i = index.setdefault(d.rule, len(rules))
        if i == len(rules):
            rules.append(d.rule)
        seg = rule_of[d.start : d.end]
        seg[seg == -1] = i
    space = np.array([c.isspace() for c in raw], dtype=bool) if n else np.zeros(0, dtype=bool)
    out = FileAudit(name, int((~space).sum()), int(((rule_of == -2) & ~space).sum()), dict(kinds))
    i = 0
    while i < n:
        if rule_of[i] == -2 or space[i]:
            i += 1
            continue
        j, r = i, rule_of[i]
        while j < n and (rule_of[j] == r or space[j]) and rule_of[j] != -2:
            j += 1
        while j > i and space[j - 1]:
            j -= 1
        out.dropped.append(Piece(rules[r] if r >= 0 else UNEXPLAINED, i, j, raw[i:j]))
        i = j
    return out


def format_audit(audits: dict[str, FileAudit], samples: int = 3, width: int = 110) -> str:
    """Per file: what share is kept, the passages of each kind, and what each rule dropped (pieces, characters,
    the first few pieces)."""
    lines = []
    for a in audits.values():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(a.kinds.items()))
        lines.append(f"{a.file}: {a.kept:,} of {a.chars:,} characters in passages ({kinds or 'no passages'})")
        for rule, pieces in sorted(a.by_rule().items(), key=lambda kv: -sum(len(p.text) for p in kv[1])):
            chars = sum(len(p.text) for p in pieces)
            lines.append(f"  dropped by {rule}: {len(pieces)} piece(s), {chars:,} characters")
            for p in pieces[:samples]:
                text = " ".join(p.text.split())
                text = text if len(text) <= width else text[: width - 1] + "…"
                lines.append(f"    [{p.start}:{p.end}] {text}")
    return "\n".join(lines)
