"""Cleaning rules: delete chrome, markers and markup from a file's text without touching its prose.

Every rule is a deletion or a white-space fold on a MappedText, so cleaned text maps back to raw offsets
and every cleaned word appears, in order, in the raw span it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from corpus.mapped import MappedText
from corpus.model import Note

SOFT_HYPHEN = "\u00ad"

# Wikipedia page chrome: menus, language list and table of contents up to the article's first words,
# then an optional "Part of a series on …" navbox that ends with its "v t e" edit links.
WIKI_HEADER = re.compile(
    r"Jump to content[\s\S]{0,20000}?From Wikipedia, the free encyclopedia\s*"
    r"(?:[^.\n]{0,200}?(?=\s*Part of a series on))?"  # the article's short description
)
WIKI_NAVBOX = re.compile(r"Part of a series on[\s\S]{0,10000}? v t e\s+")
WIKI_HATNOTE = r"(?:Main articles?:|See also:|Further information:|For the [^\n]{0,80}?, see )"
# A hatnote alone on its line goes; one glued to the first sentence of a section loses only its label.
WIKI_HATNOTE_LINE = re.compile(r"(?m)^[ \t]*" + WIKI_HATNOTE + r"[^\n]{0,200}$")
WIKI_HATNOTE_LABEL = re.compile(r"(?m)^[ \t]*" + WIKI_HATNOTE)

# Wikipedia's inline maintenance tags; editorial insertions in quotes ("[it formed a]") are prose.
MAINTENANCE_TAGS = (
    r"citation needed|who\?|whom\?|by whom\?|according to whom\?|when\?|where\?|which\?|why\?|"
    r"page needed|pages needed|dubious – discuss|dubious|dead link|clarification needed|"
    r"better source needed|failed verification|verification needed|original research\?|"
    r"full citation needed|year needed|vague|unreliable source\?|not in citation given|"
    r"additional citation\(s\) needed|improper synthesis\?|specify|disputed – discuss|edit"
)
CITATION_MARKER = re.compile(
    r"\[ ?(?:\d{1,3}|[a-z]|note \d{1,3}|" + MAINTENANCE_TAGS + r") ?\]"
    r"(?:[ \t]*:[ \t]*\d+(?:[–-][ \t]?\d+)?(?=[\s.,;]))?"
)
# "….: 4  Many" page references left behind by removed citation markers.
PAGE_REFERENCE = re.compile(r"(?m)(?:(?<=[.!?”\"’)])|^)[ \t]*:[ \t]?\d+(?:[–-][ \t]?\d+)?(?=\s)")

# Footnotes: a "---" rule followed by numbered notes (page-bottom notes between paragraphs), and
# "[12] Author, Title …" note lines at the end of an essay.
FOOTNOTE_BLOCK = re.compile(r"(?m)^[ \t]*-{3,}[ \t]*\n(?P<notes>(?:[ \t]*\n|[ \t]*\d{1,3}[ \t]+[^\n]*\n?)+)")
NOTE_LINE = re.compile(r"(?m)^[ \t]*(?P<marker>\d{1,3})[ \t]+(?P<text>[^\n]+)$")
BRACKET_NOTE_LINE = re.compile(r"(?m)^[ \t]*\[(?P<marker>\d{1,3})\][ \t]*(?P<text>[^\[\n]{10,600})$")
NOTE_REF = re.compile(r"<sup>\s*(\d{1,3})\s*</sup>|\[(\d{1,3})\]")

# "Heading [ edit ]" (on its own line, or inline after a citation marker or a sentence) marks a section.
WIKI_HEADING = re.compile(r"(?m)(?:^|(?<=\]) |(?<=[.!?”\"]) )[ \t]*(?P<h>[^\n\[\]]{1,120}?)[ \t]*\[ ?edit ?\][ \t]*")
BYTE_ORDER_MARK = re.compile(r"\A\ufeff")
HEADING_MARK = "\ue000"  # starts a heading line in cleaned text; never part of a passage

NOTE_SUP = re.compile(r"<sup>\s*\d{1,3}\s*</sup>")  # a footnote reference: marker and number both go
HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
MD_EMPHASIS = re.compile(r"(?<![\w*])\*{1,3}(?=[^\s*])|(?<=[^\s*])\*{1,3}(?![\w*])")
# A link's target looks like one (a path, a domain, a scheme, an anchor): "[M + K](+)" in a formula is not.
MD_LINK = re.compile(r"!?\[([^\[\]\n]{1,200})\]\((?=[^()\s]*[/.:#])[^()\s]{1,500}\)")
SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+(?=[,.;:!?)\]’”])|(?<=[(\[“‘])[ \t]+")
SPACES = re.compile(r"[ \t\u00a0\u2009\u202f]{2,}|[\t\u00a0\u2009\u202f]")  # only what folding changes


@dataclass
class Cleaned:
    text: MappedText
    notes: dict[str, Note]  # footnote marker -> note
    note_refs: list[tuple[str, int]]  # (marker, raw offset) of each footnote reference
    dropped_chars: int  # raw characters removed as chrome, markers or notes


def _delete_between_words(m: re.Match) -> str:
    """Deleting a marker glued between two words must not glue the words."""
    s, a, b = m.string, m.start(), m.end()
    return " " if 0 < a and b < len(s) and s[a - 1].isalnum() and s[b].isalnum() else ""


def collect_notes(raw: str) -> dict[str, Note]:
    notes: dict[str, Note] = {}
    for block in FOOTNOTE_BLOCK.finditer(raw):
        base = block.start("notes")
        for m in NOTE_LINE.finditer(block.group("notes")):
            notes.setdefault(
                m["marker"],
                Note(m["marker"], m["text"].strip(), base + m.start("text"), base + m.end("text")),
            )
    for m in BRACKET_NOTE_LINE.finditer(raw):
        notes.setdefault(m["marker"], Note(m["marker"], m["text"].strip(), m.start("text"), m.end("text")))
    return notes


def clean_text(raw: str, drop: list[str] | None = None, start: MappedText | None = None) -> Cleaned:
    """Clean plain text or Markdown (or the visible text of HTML, passed as `start`) into a MappedText."""
    notes = collect_notes(raw) if start is None else {}
    note_refs = [(m.group(1) or m.group(2), m.start()) for m in NOTE_REF.finditer(raw)]
    note_refs = [(k, pos) for k, pos in note_refs if k in notes]

    mt = start if start is not None else MappedText.of(raw)
    mt = mt.sub(BYTE_ORDER_MARK, "")  # a UTF-8 file's mark stays in its text (offsets), not in its first line
    for pattern in drop or []:
        mt = mt.sub(pattern, "\n\n")
    for rule in (WIKI_HEADER, WIKI_NAVBOX):
        mt = mt.sub(rule, "\n\n")
    mt = mt.sub(FOOTNOTE_BLOCK, "")
    mt = mt.sub(WIKI_HEADING, lambda m: f"\n{HEADING_MARK}{m['h']}\n")
    for rule in (BRACKET_NOTE_LINE, WIKI_HATNOTE_LINE, WIKI_HATNOTE_LABEL):
        mt = mt.sub(rule, "")
    mt = mt.sub(NOTE_SUP, _delete_between_words)
    mt = mt.sub(HTML_TAG, _delete_between_words)
    mt = mt.sub(MD_LINK, r"\1")
    mt = mt.sub(SPACES, " ")
    mt = mt.sub(CITATION_MARKER, _delete_between_words)
    mt = mt.sub(PAGE_REFERENCE, "")
    mt = mt.sub(MD_EMPHASIS, "")
    mt = mt.sub(SPACES, " ")
    mt = mt.sub(SPACE_BEFORE_PUNCT, "")
    kept = len(set(mt.pos.tolist()))
    return Cleaned(mt, notes, note_refs, dropped_chars=len(raw) - kept)
