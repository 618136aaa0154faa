"""Plain-text rendering of an answer for a person at a terminal (`qa ask` without --json)."""

from __future__ import annotations

import re
import textwrap

import click

from qa.schema import AskResponse, PassageOut

WORD = re.compile(r"\w+")
WIDTH = 100
# What a document may hold that a terminal would obey rather than show: C0 and C1 controls (escape sequences,
# OSC titles and links, carriage returns) and the bidirectional overrides and isolates that reorder a line.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every character a terminal would act on shown as its code (the JSON keeps it verbatim)."""
    return UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def highlight_spans(p: PassageOut, raw: str | None) -> list[tuple[int, int]]:
    """Spans of `p.text` for its highlights (raw-file offsets), best first.

    A highlight's own `text`, when the engine gives one, is found in the passage text. Otherwise the
    passage's words are aligned, in order, with the words of the raw span it cites (every word of the
    cleaned text appears there), and a highlight covers the passage words whose raw position lies in it.
    """
    spans = []
    for h in p.highlights:
        own = getattr(h, "text", None)
        if own and (at := p.text.find(own)) >= 0:
            spans.append((at, at + len(own)))
    if spans or raw is None or not p.highlights:
        return spans
    s0 = p.source.start
    raw_words = [(m.group().lower(), s0 + m.start()) for m in WORD.finditer(raw[s0 : p.source.end])]
    placed, j = [], 0
    for m in WORD.finditer(p.text):
        word = m.group().lower()
        k = next((k for k in range(j, len(raw_words)) if raw_words[k][0] == word), None)
        if k is not None:
            placed.append((m.start(), m.end(), raw_words[k][1]))
            j = k + 1
    for h in p.highlights:
        inside = [(a, b) for a, b, r in placed if h.start <= r < h.end]
        if inside:
            a, b = inside[0][0], inside[-1][1]
            while a > 0 and not p.text[a - 1].isspace():  # opening quote or bracket
                a -= 1
            while b < len(p.text) and not p.text[b].isspace():  # closing punctuation
                b += 1
            spans.append((a, b))
    return spans


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(printable(" ".join(text.split())), WIDTH, initial_indent=indent, subsequent_indent=indent)


def render_passage(p: PassageOut, raw: str | None, full: bool, color: bool) -> str:
    src = p.source
    year = f", {src.year}" if src.year else ""
    where = f" — § {src.section}" if src.section else ""
    tag = f"[{src.passage_kind}] " if src.passage_kind != "body" else ""  # a note, a caption, a byline, a quote
    head = printable(f"{p.rank:>2}. {tag}{src.title} ({src.author}{year}){where}")
    lines = [click.style(head, bold=True) if color else head]
    described = f" — {p.viewpoint.description}" if p.viewpoint.description else ""
    lines.append(printable(f"    viewpoint: {p.viewpoint.label}{described}"))
    spans = highlight_spans(p, raw)
    if spans and not full:
        a, b = spans[0]
        lines.append(_wrap(f"“{p.text[a:b]}”", "    » "))
    else:
        lines.append(_wrap(p.text, "    "))
    holders = sorted({f"{a.holder} ({a.level})" for a in p.attributions})
    if holders:
        lines.append(_wrap("held by: " + "; ".join(holders), "    "))
    if not p.supports_answer:
        lines.append(f"    (does not support an answer: support {p.support:.2f})")
    lines.append(_wrap("cite: " + p.citation.text, "    "))
    lines.append(f"    id: {p.id}")
    if p.cited_by:
        lines.append(_wrap("note cited from: " + ", ".join(p.cited_by), "    "))
    linked = [f"{n.marker} → {n.passage}" for n in p.notes if n.passage]
    if linked:
        lines.append(_wrap("notes: " + "; ".join(linked), "    "))
    return "\n".join(lines)


def render_answer(resp: AskResponse, raw_text=None, full: bool = False, color: bool = False) -> str:
    """`raw_text(file) -> str | None` gives a corpus file's raw text, used to place highlights."""
    out = []
    if resp.answered:
        groups = printable(", ".join(f"{g.label} ({len(g.passages)})" for g in resp.viewpoints))
        out.append(f"{len(resp.passages)} passages from {len(resp.viewpoints)} viewpoint(s): {groups}")
    else:
        reason = f" ({resp.reason})" if resp.reason else ""
        out.append(f"The collection does not answer this{reason}. Nearest passages:")
    for p in resp.passages:
        raw = raw_text(p.source.file) if raw_text else None
        out.append("")
        out.append(render_passage(p, raw, full, color))
    return "\n".join(out)
