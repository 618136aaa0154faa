"""Cleaning rules: delete chrome, markers and markup from a file's text without touching its prose.

Every rule is a deletion or a white-space fold on a MappedText, so cleaned text maps back to raw offsets
and every cleaned word appears, in order, in the raw span it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

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
# A reference's backlinks in a copied Wikipedia page: "^ ", "^ a b c " before the note's first word.
WIKI_BACKLINK = re.compile(r"(?m)(?:^|(?<=\s))\^(?:[ \t]+[a-z](?=[ \t]))*[ \t]*(?=[A-Z\"“‘'])")
# "….: 4  Many" page references left behind by removed citation markers.
PAGE_REFERENCE = re.compile(r"(?m)(?:(?<=[.!?”\"’)])|^)[ \t]*:[ \t]?\d+(?:[–-][ \t]?\d+)?(?=\s)")

# Footnotes: a "---" rule followed by numbered notes (page-bottom notes between paragraphs), and
# "[12] Author, Title …" note lines at the end of an essay.
FOOTNOTE_BLOCK = re.compile(r"(?m)^[ \t]*-{3,}[ \t]*\n(?P<notes>(?:[ \t]*\n|[ \t]*\d{1,3}[ \t]+[^\n]*\n?)+)")
NOTE_LINE = re.compile(r"(?m)^[ \t]*(?P<marker>\d{1,3})[ \t]+(?P<text>[^\n]+)$")
BRACKET_NOTE_LINE = re.compile(r"(?m)^[ \t]*\[(?P<marker>\d{1,3})\][ \t]*(?P<text>[^\[\n]{10,600})$")
# The same notes' markers, replaced by NOTE_MARK: the note's text becomes a note paragraph where it stands.
BRACKET_NOTE_MARKER = re.compile(r"(?m)^[ \t]*\[(?P<marker>\d{1,3})\][ \t]*(?=[^\[\n]{10,600}$)")
# Markdown footnotes: "[^1]: text" lines, cited by "[^1]".
MD_FOOTNOTE = re.compile(r"(?m)^[ \t]{0,3}\[\^(?P<marker>[\w-]{1,20})\]:[ \t]*(?P<text>\S[^\n]*)$")
MD_FOOTNOTE_MARKER = re.compile(r"(?m)^[ \t]{0,3}\[\^[\w-]{1,20}\]:[ \t]*(?=\S)")
MD_FOOTNOTE_REF = re.compile(r"\[\^[\w-]{1,20}\](?!:)")
NOTE_REF = re.compile(r"<sup>\s*(\d{1,3})\s*</sup>|\[(\d{1,3})\]|\[\^([\w-]{1,20})\](?!:)")

# Marks that open a paragraph of another kind than the body (see corpus.model.PASSAGE_KINDS), like HEADING_MARK:
# private-use characters, never part of a passage.
KIND_MARKS = {"note": "\ue001", "caption": "\ue002", "byline": "\ue003", "quote": "\ue004"}
MARK_KINDS = {v: k for k, v in KIND_MARKS.items()}
NOTE_MARK, BYLINE_MARK = KIND_MARKS["note"], KIND_MARKS["byline"]
# A byline or colophon line: who wrote, published or translated the work, for whom, when. Only labelled forms
# ("Written by", "Published by", "Date written:", "©"): "By leaving the EU, …" is prose. A short line, of at most
# two sentences: "© J. M. 2013. All rights reserved. A challenging reappraisal of …" is an abstract after one.
BYLINE_LINE = re.compile(
    r"(?im)^[ \t]*(?![^\n]*[.!?][ \t]+[A-Z][^\n]*[.!?][ \t]+[A-Z])"
    r"(?=(?:(?:written|posted|published|translated|edited|compiled|transcribed|illustrated|photographed|"
    r"reprinted|printed|designed|typeset)[ \t]+by\b|(?:by|authors?|date written|date published|written at|"
    r"written for|first published|translator|copyright)[ \t]*:|©|copyright[ \t]+(?:©|\(c\)|\d{4}))"
    r"[^\n]{0,200}$)"
)

# Page chrome that is not a work's text: a blog's comment form, share buttons, cookie notices.
COMMENT_FORM = re.compile(
    r"(?im)^[ \t]*(?:leave a (?:reply|comment)|post a comment)[ \t]*\n\s*"
    r"your email address will not be published\.[^\n]*(?:\n[ \t]*(?:comment|name|email|website)[ \t]*\*?[ \t]*$)*"
)
SHARE_COOKIE_LINE = re.compile(
    r"(?im)^[ \t]*(?:share this:?|share on (?:facebook|twitter|x|linkedin|whatsapp|reddit|email)|"
    r"click to (?:share|print|email)[^\n]{0,60}|like this:?|like loading\.{3}|(?:this (?:web)?site|we) uses? cookies"
    r"[^\n]{0,300}|accept (?:all )?cookies|cookie (?:settings|preferences|policy))[ \t]*$"
)

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
    trace: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (rule, raw offsets it deleted), if asked


def _delete_between_words(m: re.Match) -> str:
    """Deleting a marker glued between two words must not glue the words."""
    s, a, b = m.string, m.start(), m.end()
    return " " if 0 < a and b < len(s) and s[a - 1].isalnum() and s[b].isalnum() else ""


def collect_notes(raw: str) -> tuple[dict[str, Note], set[int]]:
    """The file's numbered notes, and where their own markers stand (a note's "[3]" does not cite it)."""
    notes: dict[str, Note] = {}
    own: set[int] = set()
    for block in FOOTNOTE_BLOCK.finditer(raw):
        base = block.start("notes")
        for m in NOTE_LINE.finditer(block.group("notes")):
            notes.setdefault(
                m["marker"],
                Note(m["marker"], m["text"].strip(), base + m.start("text"), base + m.end("text")),
            )
    for rx in (BRACKET_NOTE_LINE, MD_FOOTNOTE):
        for m in rx.finditer(raw):
            own.add(m.start("marker") - 1 - (rx is MD_FOOTNOTE))
            notes.setdefault(m["marker"], Note(m["marker"], m["text"].strip(), m.start("text"), m.end("text")))
    return notes, own


def _mark_footnote_blocks(m: re.Match) -> list[tuple[int, int, str]]:
    """A "---" footnote block: the rule goes, each note's number becomes NOTE_MARK."""
    out = [(m.start(), m.start("notes"), "\n\n")]
    base = m.start("notes")
    for line in NOTE_LINE.finditer(m.group("notes")):
        out.append((base + line.start(), base + line.start("text"), "\n\n" + NOTE_MARK))
    return out


def mark_kinds(mt: MappedText, bylines: list[str], notes: bool, log: list | None = None) -> MappedText:
    """Open each note (its marker goes) and each byline with its kind's mark, on a paragraph of its own."""
    spans: list[tuple[int, int, str]] = []
    if notes:
        for m in FOOTNOTE_BLOCK.finditer(mt.text):
            spans += _mark_footnote_blocks(m)
        for rx in (BRACKET_NOTE_MARKER, MD_FOOTNOTE_MARKER):
            spans += [(m.start(), m.end(), "\n\n" + NOTE_MARK) for m in rx.finditer(mt.text)]
    for rx in [BYLINE_LINE, *(re.compile(b) for b in bylines)]:
        for m in rx.finditer(mt.text):
            at = m.start() + len(m.group()) - len(m.group().lstrip())
            spans.append((at, at, "\n\n" + BYLINE_MARK))
    spans.sort()
    kept: list[tuple[int, int, str]] = []
    for a, b, new in spans:  # a line both a byline and a note is a note
        if kept and a < kept[-1][1] or (kept and a == kept[-1][0] == kept[-1][1] == b):
            continue
        kept.append((a, b, new))
    if log is not None and any(b > a for a, b, _ in kept):
        log.append(("note marker or footnote rule", np.concatenate([mt.pos[a:b] for a, b, _ in kept])))
    return mt.replace(kept)


def clean_text(
    raw: str,
    drop: list[str] | None = None,
    start: MappedText | None = None,
    bylines: list[str] | None = None,
    trace: bool = False,
    found: tuple[dict[str, Note], list[tuple[str, int]]] | None = None,
) -> Cleaned:
    """Clean plain text or Markdown (or the visible text of HTML, passed as `start`) into a MappedText.

    Notes, bylines (lines matching BYLINE_LINE or a pattern of `bylines`), captions and quote boxes are kept as
    paragraphs opened by their kind's mark (KIND_MARKS). With `trace`, Cleaned.trace says which rule deleted
    which raw characters (corpus.audit). `found`: the notes and their references that the format's own parser
    found (an HTML page's footnotes), for a text that does not start from the raw file."""
    if found is not None:
        notes, note_refs = found
    else:
        notes, own = collect_notes(raw) if start is None else ({}, set())
        note_refs = [(m.group(1) or m.group(2) or m.group(3), m.start()) for m in NOTE_REF.finditer(raw)]
        note_refs = [(k, pos) for k, pos in note_refs if k in notes and pos not in own]
    log: list[tuple[str, np.ndarray]] = []

    def sub(mt: MappedText, rule: str, pattern, repl="") -> MappedText:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        if trace:  # the raw characters of each match go (a replacement's characters are new)
            spans = [m.span() for m in rx.finditer(mt.text)]
            gone = [mt.pos[a:b] for a, b in spans if b > a]
            if gone:
                log.append((rule, np.concatenate(gone)))
        return mt.sub(rx, repl)

    def keep(mt: MappedText, rule: str, rx: re.Pattern, group: str | int, before: str = "", after: str = ""):
        """Replace each match by its `group` (between `before` and `after`), which keeps its raw offsets."""
        spans: list[tuple[int, int, str]] = []
        for m in rx.finditer(mt.text):
            spans += [(m.start(), m.start(group), before), (m.end(group), m.end(), after)]
        if trace and spans:
            log.append((rule, np.concatenate([mt.pos[a:b] for a, b, _ in spans])))
        return mt.replace(spans)

    mt = start if start is not None else MappedText.of(raw)
    mt = sub(mt, "byte-order mark", BYTE_ORDER_MARK)  # a UTF-8 file's mark stays in its text (offsets)
    for i, pattern in enumerate(drop or []):
        mt = sub(mt, f"manifest drop rule {i + 1}: {pattern}", pattern, "\n\n")
    for rule, rx in (
        ("Wikipedia page header (menus, language list, contents)", WIKI_HEADER),
        ("Wikipedia navbox", WIKI_NAVBOX),
        ("comment form", COMMENT_FORM),
        ("share and cookie boilerplate", SHARE_COOKIE_LINE),
    ):
        mt = sub(mt, rule, rx, "\n\n")
    mt = mark_kinds(mt, bylines or [], notes=start is None, log=log if trace else None)
    mt = keep(mt, "[edit] link", WIKI_HEADING, "h", f"\n{HEADING_MARK}", "\n")
    for rule, rx in (("Wikipedia hatnote", WIKI_HATNOTE_LINE), ("Wikipedia hatnote", WIKI_HATNOTE_LABEL)):
        mt = sub(mt, rule, rx, "")
    mt = sub(mt, "footnote reference", NOTE_SUP, _delete_between_words)
    mt = sub(mt, "footnote reference", MD_FOOTNOTE_REF, _delete_between_words)
    mt = sub(mt, "markup (HTML tag)", HTML_TAG, _delete_between_words)
    mt = keep(mt, "markup (link target)", MD_LINK, 1)
    mt = sub(mt, "white space", SPACES, " ")
    mt = sub(mt, "citation or maintenance marker", CITATION_MARKER, _delete_between_words)
    mt = sub(mt, "page reference of a removed citation", PAGE_REFERENCE, "")
    mt = sub(mt, "reference backlink (^ a b)", WIKI_BACKLINK, "")
    mt = sub(mt, "markup (emphasis)", MD_EMPHASIS, "")
    mt = sub(mt, "white space", SPACES, " ")
    mt = sub(mt, "white space", SPACE_BEFORE_PUNCT, "")
    kept = len(set(mt.pos.tolist()))
    return Cleaned(mt, notes, note_refs, dropped_chars=len(raw) - kept, trace=log)
