"""Recover structure from cleaned text: section headings, paragraphs, sentences.

Files mark structure differently (Markdown "#", "Title [edit]", a short title line before a paragraph, or
nothing at all), so each rule here uses only what the text gives; none names a particular file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import blingfire
import numpy as np

from corpus.clean import HEADING_MARK, MARK_KINDS, SOFT_HYPHEN
from corpus.mapped import MappedText

BACK_MATTER = {
    "see also", "references", "notes", "citations", "sources", "further reading", "external links",
    "bibliography", "footnotes", "works cited", "notes and references", "external link",
}  # fmt: skip
MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$")
TERMINAL = set('.!?:;"”’)]…')
STOPWORDS = frozenset(
    "a an the of and or but to in on at by for with from as is are was were be been being that this these "
    "those it its he she they his her their him them we our you i not no which who whom whose what when where "
    "why how than then there so such also into over under after before during while about against between "
    "would could should will can may might must has have had do does did".split()
)
# A table of contents entry: a title, dot leaders (or a tab), a page number.
CONTENTS_ENTRY = re.compile(r"(?:\.{3,}|…|\t)\s*(?:\d+|[ivxlc]+)\s*$", re.I)
REFERENCE_STRONG = re.compile(r"\bISBN\b|\bISSN\b|\bdoi ?:|\bRetrieved\b|Archived from|\bOCLC\b|\bJSTOR\b|\bS2CID\b")
REFERENCE_WEAK = re.compile(
    r"\bpp?\. ?\d|University Press|\(\d{4}\)\.|\bet al\.|\bVol\. ?\d|\(eds?\.\)|\bed\.\)|"
    r"^[A-Z][\w'’-]+, [A-Z][\w.]*.{0,80}\((?:[A-Z][a-z]+ )?(?:\d{1,2}, )?\d{4}\)"  # "Surname, Given (May 2, 2013)"
)
WORD = re.compile(r"\w+")
# A quotation of some length inside a note or reference entry is evidence worth keeping.
QUOTATION = re.compile(r'"[^"\n]{80,}?"|“[^”\n]{80,}?”|"[^"\n]{80,}$')
# A longer "sentence" (unpunctuated text: a list, a log, a poem without stops) is split at line starts, else
# between words. Above the longest real sentence of the bundled corpus (142 words), so real prose stays whole.
MAX_SENTENCE_WORDS = 150


@dataclass
class Paragraph:
    text: MappedText
    section: str | None
    back_matter: bool = False  # see also, references, notes: only quotations in them are kept
    heading: bool = False  # a section heading: read by readers, so searchable text like any other
    line_starts: list[int] = field(default_factory=list)  # where each joined line begins in text (after the 1st)
    kind: str = "body"  # see corpus.model.PASSAGE_KINDS


@dataclass
class Sentence:
    text: str  # cleaned
    start: int  # raw
    end: int  # raw
    section: str | None
    paragraph: int  # index within its work
    words: int
    back_matter: bool = False
    heading: bool = False
    kind: str = "body"


_BACK_MATTER_RULE = "back matter: reference and link lists (see also, references, further reading, external links)"


@dataclass
class Dropped:
    """Text that structure recovery left out of every passage, and the rule that did (corpus.audit)."""

    rule: str
    start: int  # raw
    end: int  # raw


def _lines(mt: MappedText) -> list[MappedText]:
    out, a = [], 0
    for m in re.finditer(r"\n", mt.text + "\n"):
        seg = mt.slice(a, m.start())
        lead = len(seg.text) - len(seg.text.lstrip())
        out.append(seg.slice(lead, len(seg.text.rstrip())))
        a = m.end()
    return out


def _heading(line: str, next_line: str | None) -> str | None:
    if line.startswith(HEADING_MARK):
        return line[1:].strip()
    if m := MD_HEADING.match(line):
        return m.group(1).strip()
    words = line.split()
    # A short title line (no closing punctuation) directly above a paragraph: "History", "Legacy".
    if (
        1 <= len(words) <= 8
        and line[0].isupper()
        and line[-1] not in TERMINAL | {","}
        and next_line is not None
        and (len(next_line.split()) >= 25 or next_line.strip().lower() in BACK_MATTER)
    ):
        return line.strip()
    return None


# A work's opening line set apart by a blank line, above a paragraph: its title, even when long or ending in a
# stop ("Tetraspanin 3 Is Required for the Development of Acute Myelogenous Leukemia."). The cap is above the
# longest title of the bundled and evaluation corpora (SciFact's reach 35 words), below a paragraph's length.
TITLE_MAX_WORDS = 40


def opening_title(lines: list[str]) -> str | None:
    """The title a work's text opens with: its first non-empty line when a blank line and then a longer paragraph
    (25 words or more, as for a heading) follow it; None when the text does not open that way."""
    at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if at is None or at + 1 >= len(lines) or lines[at + 1].strip():
        return None
    title = lines[at].strip()
    after = next((line for line in lines[at + 1 :] if line.strip()), "")
    words = len(title.split())
    if title[0] in MARK_KINDS or not 1 <= words <= TITLE_MAX_WORDS or len(after.split()) < max(25, words):
        return None
    return title


def _is_hard_wrapped(lines: list[MappedText]) -> bool:
    lengths = [len(x.text) for x in lines if x.text]
    blank = sum(1 for x in lines if not x.text)
    return bool(lengths) and blank > 0 and float(np.median(lengths)) < 90


def _continues(prev: str, nxt: str) -> bool:
    """A paragraph cut by a page break or a footnote block: it ends mid-sentence."""
    if not prev or not nxt:
        return False
    return prev[-1].islower() or prev[-1] in ",-–—" or (prev[-1] not in TERMINAL and nxt[0].islower())


def _join(lines: list[MappedText]) -> tuple[MappedText, list[int]]:
    """A paragraph's lines as one text (and where each line after the first starts in it), built once: joining
    line by line copied the whole paragraph for every line, quadratic in a long unpunctuated file.

    Lines join with a space; a line ending in "ques-" before "tion" joins with a soft hyphen instead, which keeps
    both raw words and reads as one word."""
    texts, positions, starts = [lines[0].text], [lines[0].pos], []
    length, tail = len(lines[0].text), lines[0].text[-2:]
    for b in lines[1:]:
        if tail.endswith("-") and len(tail) > 1 and tail[-2].isalpha() and b.text[:1].islower():
            texts[-1] = texts[-1][:-1] + SOFT_HYPHEN
        else:
            texts.append(" ")
            positions.append(positions[-1][-1:])  # the space maps to the last character before it
            length += 1
        starts.append(length)
        texts.append(b.text)
        positions.append(b.pos)
        length += len(b.text)
        tail = (texts[-2][-1:] + b.text)[-2:]
    return MappedText("".join(texts), np.concatenate(positions), lines[0].raw_len), starts


def _next_nonempty(lines: list[MappedText]) -> list[str | None]:
    """For each line, the text of the next non-empty line after it."""
    out: list[str | None] = [None] * len(lines)
    nxt = None
    for i in range(len(lines) - 1, -1, -1):
        out[i] = nxt
        nxt = lines[i].text or nxt
    return out


def paragraphs(mt: MappedText, dropped: list[Dropped] | None = None) -> list[Paragraph]:
    """Split a work's cleaned text into paragraphs with their section; stop at back matter.

    A line opened by a kind mark (corpus.clean.KIND_MARKS) starts a paragraph of that kind, which takes the
    lines right below it (no blank line between) that continue it; the body paragraph it interrupts (a footnote
    block between two pages) may still continue after it."""
    lines = _lines(mt)
    wrapped = _is_hard_wrapped(lines)
    following = _next_nonempty(lines)
    title = opening_title([line.text for line in lines])
    out: list[Paragraph] = []
    parts: dict[int, list[MappedText]] = {}  # id of a paragraph -> its lines, joined once at the end
    section: str | None = None
    prev: Paragraph | None = None  # the paragraph a line may continue (none right after a heading)
    other: Paragraph | None = None  # the paragraph of another kind the next line may continue
    after_break = back_matter = False
    for line, nxt in zip(lines, following, strict=True):
        if not line.text:
            after_break, other = True, None
            continue
        if (kind := MARK_KINDS.get(line.text[0])) is not None:
            text = line.slice(1, len(line.text))
            text = text.slice(len(text.text) - len(text.text.lstrip()), len(text.text))
            if text.text:
                other = Paragraph(text, section, kind=kind)
                parts[id(other)] = [text]
                out.append(other)
            after_break = False
            continue
        if other is not None and not after_break and _continues_other(other, parts[id(other)][-1].text, line.text):
            parts[id(other)].append(line)
            continue
        other = None
        heading = _heading(line.text, nxt) or (title if not out and line.text == title else None)
        if heading is not None and back_matter and not _marked_heading(line.text) and not _names_back_matter(heading):
            heading = None  # among references, a short plain line is a caption or an entry, not a heading
        if heading is not None:
            back_matter = _back_matter(heading, line.text, back_matter)
            section, prev = heading, None
            if not back_matter and (at := line.text.find(heading)) >= 0:  # the heading's words, without "#"
                out.append(Paragraph(line.slice(at, at + len(heading)), section, heading=True))
                if dropped is not None:  # "## " before the words, "##" after them (not the mark: no raw text)
                    rest = [(0, at), (at + len(heading), len(line.text))]
                    rest = [line.raw_span(a, b) for a, b in rest if line.text[a:b].strip(HEADING_MARK + " \t")]
                    dropped += [Dropped("heading markup (#)", a, b) for a, b in rest]
            elif back_matter and dropped is not None:
                dropped.append(Dropped("back-matter heading", *line.raw_span(0, len(line.text))))
        elif prev is not None and ((wrapped and not after_break) or _continues(parts[id(prev)][-1].text, line.text)):
            parts[id(prev)].append(line)
        else:
            prev = Paragraph(line, section, back_matter)
            parts[id(prev)] = [line]
            out.append(prev)
        after_break = False
    for para in out:
        if len(parts.get(id(para), ())) > 1:
            para.text, para.line_starts = _join(parts[id(para)])
    return out


def _names_back_matter(heading: str) -> bool:
    return heading.lower() in BACK_MATTER


def _marked_heading(line: str) -> bool:
    return line.startswith(HEADING_MARK) or MD_HEADING.match(line) is not None


def _continues_other(para: Paragraph, prev: str, line: str) -> bool:
    """Whether a line right below a note, caption or byline continues it: a byline takes a short line ("January
    2023" below "Published by Red Rebel Press"), the others a line that goes on with their sentence."""
    if line[0] in MARK_KINDS or line.startswith(HEADING_MARK) or MD_HEADING.match(line):
        return False
    if para.kind == "byline":
        return len(line.split()) <= 8 and prev[-1:] not in TERMINAL
    return _continues(prev, line)


def _back_matter(heading: str, line: str, back_matter: bool) -> bool:
    """Whether the lines after this heading are back matter. Notes and references last to the end, unless a
    Markdown heading (structure the author marked) starts a new part, e.g. the next work of a file after the
    previous one's notes; a plain line taken for a heading there is more likely a caption or a list entry.
    (A table of contents is not back matter: the work follows it, and its entries are dropped as junk.)"""
    if heading.lower() in BACK_MATTER:
        return True
    return back_matter and not MD_HEADING.match(line)


def _prose_words(text: str) -> list[str]:
    return WORD.findall(text.replace(SOFT_HYPHEN, ""))


def is_junk(text: str) -> bool:
    """Reference entries and bare lists of names or titles, not prose a researcher would quote."""
    return junk_reason(text) is not None


def junk_reason(text: str) -> str | None:
    """Why a sentence is not prose a researcher would quote (a reference entry, a list of names), or None."""
    words = _prose_words(text)
    if not words:
        return "no words (punctuation, symbols)"
    if CONTENTS_ENTRY.search(text):
        return "table of contents entry"
    if REFERENCE_STRONG.search(text):
        return "reference entry (ISBN, DOI, 'Retrieved', archive link)"
    stop = sum(w.lower() in STOPWORDS for w in words) / len(words)
    if REFERENCE_WEAK.search(text) and stop < 0.25:
        return "reference entry (pages, publisher, year)"
    caps = sum(w[0].isupper() for w in words) / len(words)
    if len(words) >= 8 and stop < 0.15 and caps > 0.55:
        return "list of names or titles"
    # A short line in Title Case is a book or article title, not a sentence.
    content = [w for w in words if w.lower() not in STOPWORDS and len(w) > 2 and not w[0].isdigit()]
    if 3 <= len(content) and len(words) <= 15 and all(w[0].isupper() for w in content):
        return "title or name line (Title Case)"
    return None


# Words of a caption: what an image shows and where.
CAPTION_WORDS = re.compile(
    r"(?i)\b(?:photo(?:graph)?s?|pictured|picture|image|portrait|poster|painting|drawing|illustration|cartoon|"
    r"map|seen|shown|depicted|(?:from )?(?:left|right) to (?:left|right)|\((?:left|right|centre|center|top|bottom)\))"
)
CAPTION_MAX_WORDS = 60
VERB_HINT = re.compile(
    r"\b(?:is|are|was|were|be|been|being|has|have|had|does|did|would|could|should|will|can|may|might|must|"
    r"[a-z]{3,}(?:ed|ing))\b"
)


def back_matter_kind(text: str) -> str | None:
    """What a paragraph among references and link lists is when it is prose a reader reads: an image's caption
    (short; says what a picture shows, or is a bare description without a closing stop) or a note; None for a
    reference entry, a link or a name."""
    if is_junk(text):
        return None
    words = _prose_words(text)
    content = [w for w in words if w.lower() not in STOPWORDS and len(w) > 2 and not w[0].isdigit()]
    described = len(words) >= 4 and any(w[0].islower() for w in content)
    if described and len(words) <= CAPTION_MAX_WORDS and (CAPTION_WORDS.search(text) or text[-1] not in TERMINAL):
        return "caption"
    # A note says something (a verb); a book's title in sentence case does not.
    return "note" if _is_note_prose(text) and len(words) >= 12 and VERB_HINT.search(text) else None


def _is_prose_quote(quote: str) -> bool:
    """A quoted passage of prose, not a quoted title ("Khrushchev's Secret Speech, 'On the Cult of…'")."""
    words = _prose_words(quote)
    if len(words) < 25 or sum(w.lower() in STOPWORDS for w in words) / len(words) < 0.3:
        return False
    content = [w for w in words if w.lower() not in STOPWORDS]
    return sum(w[0].isupper() for w in content) / max(1, len(content)) < 0.6


def sentences(paras: list[Paragraph], first: int = 0, dropped: list[Dropped] | None = None) -> list[Sentence]:
    """The paragraphs' sentences (numbered from `first`). A back-matter paragraph gives only its quotations,
    unless it is prose (a caption, a note: back_matter_kind); what it does not give is noted in `dropped`."""
    out: list[Sentence] = []
    for pi, para in enumerate(paras, start=first):
        text = para.text.text
        if para.back_matter and (kind := back_matter_kind(text)):
            para.back_matter, para.kind = False, kind
        _, offsets = blingfire.text_to_sentences_and_offsets(text)
        if para.heading:  # one line, one unit, whatever its punctuation
            offsets = [(0, len(text))]
        elif para.back_matter:  # the quotations themselves, without the citation around them
            offsets = [m.span() for m in QUOTATION.finditer(text) if _is_prose_quote(m.group())]
            if dropped is not None and text:
                dropped.append(Dropped(_BACK_MATTER_RULE, *para.text.raw_span(0, len(text))))
        for a, b in offsets:
            while a < b and text[a].isspace():
                a += 1
            while b > a and text[b - 1].isspace():
                b -= 1
            if b <= a:
                continue
            words = len(_prose_words(text[a:b]))
            pieces = [(a, b)] if para.heading or words <= MAX_SENTENCE_WORDS else _split_long(text, a, b, para)
            for pa, pb in pieces:
                start, end = para.text.raw_span(pa, pb)
                s = text[pa:pb]
                n = words if len(pieces) == 1 else len(_prose_words(s))
                out.append(Sentence(s, start, end, para.section, pi, n, para.back_matter, para.heading, para.kind))
    return out


def _split_long(text: str, a: int, b: int, para: Paragraph) -> list[tuple[int, int]]:
    """text[a:b] in pieces of at most MAX_SENTENCE_WORDS words: cut at a line start if one leaves the piece at
    least half full, else between words (a single word longer than the cap stays whole)."""
    line_starts = set(para.line_starts)
    tokens = [(a + m.start(), a + m.end(), len(_prose_words(m.group()))) for m in re.finditer(r"\S+", text[a:b])]
    pieces: list[tuple[int, int]] = []
    first, words, cut = 0, 0, None  # the piece's first token, its words, the token it would best be cut before
    for i, (start, _, n) in enumerate(tokens):
        if words + n > MAX_SENTENCE_WORDS and i > first:
            j = cut if cut is not None else i
            pieces.append((tokens[first][0], tokens[j - 1][1]))
            first, cut = j, None
            words = sum(t[2] for t in tokens[j:i])
        if i > first and start in line_starts and words >= MAX_SENTENCE_WORDS // 2:
            cut = i
        words += n
    pieces.append((tokens[first][0], tokens[-1][1]))
    return pieces


def drop_junk(
    sents: list[Sentence], tail_run: int = 10, tail_share: float = 0.6, dropped: list[Dropped] | None = None
) -> list[Sentence]:
    """Drop junk body sentences. Once the tail is mostly junk (notes and references without a heading), keep
    only its prose: explanatory notes and quotations, which become notes. Notes, captions, bylines and quotes
    set apart by the file's own structure are kept whole. What goes is noted in `dropped`, with its rule."""
    other = [s for s in sents if s.kind != "body"]
    quoted = [s for s in sents if s.kind == "body" and s.back_matter]
    for s in quoted:
        if (why := junk_reason(s.text)) and dropped is not None:
            dropped.append(Dropped(why, s.start, s.end))
    quoted = [s for s in quoted if not is_junk(s.text)]
    sents = [s for s in sents if s.kind == "body" and not s.back_matter]
    reasons = [None if s.heading else junk_reason(s.text) for s in sents]
    flags = [r is not None for r in reasons]
    for i in range(1, len(sents)):  # a short fragment ("Routledge.", "No one.") goes with its neighbour
        if sents[i].words < 8 and sents[i].paragraph == sents[i - 1].paragraph:
            flags[i] = flags[i] and flags[i - 1] if sents[i].words > 3 else flags[i - 1]
            if flags[i] and reasons[i] is None:
                reasons[i] = "fragment of the reference entry before it"
    n = len(flags)
    junk_after = np.cumsum(flags[::-1])[::-1] if n else np.zeros(0)
    cut = n
    for i in range(n):
        rest = n - i
        if flags[i] and rest >= tail_run and junk_after[i] / rest >= tail_share:
            cut = i
            break
    body = [s for s, junk in zip(sents[:cut], flags[:cut], strict=True) if not junk]
    notes: list[Sentence] = []
    for i in range(cut, n):
        s = sents[i]
        # A short sentence right after a note's sentence ("But it is doctored, of course.") is the note's too.
        goes_on = bool(notes) and notes[-1] is sents[i - 1] and 4 <= s.words < 8 and junk_reason(s.text) is None
        if not flags[i] and (_is_note_prose(s.text) or goes_on):
            notes.append(s)
        elif dropped is not None:
            dropped.append(Dropped(reasons[i] or "reference list without a heading (not prose)", s.start, s.end))
    if dropped is not None:
        junk = zip(sents[:cut], reasons[:cut], flags[:cut], strict=True)
        dropped += [Dropped(r or "junk", s.start, s.end) for s, r, f in junk if f]
    for s in notes:
        s.section, s.kind = "Notes", "note"
    for s in quoted:
        s.kind = "note"
    return body + notes + quoted + other


def _is_note_prose(text: str) -> bool:
    words = _prose_words(text)
    stop = sum(w.lower() in STOPWORDS for w in words) / max(1, len(words))
    return len(words) >= 8 and stop >= 0.3 and not text.startswith(('"', "“"))
