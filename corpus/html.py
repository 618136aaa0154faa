"""HTML to cleaned text with raw offsets, using the standard library's tolerant parser; and the page's metadata
from its <title> and <meta> tags (citation_*, Dublin Core, Open Graph, author/date/description)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser

import numpy as np

from corpus.clean import HEADING_MARK, KIND_MARKS
from corpus.formats import Metadata, names, one_line, year_of
from corpus.mapped import MappedText
from corpus.model import Note

SKIP = {
    "script",
    "style",
    "nav",
    "header",
    "footer",
    "aside",
    "noscript",
    "form",
    "template",
    "svg",
    "button",
}
BLOCK = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "table", "tr", "td", "th", "blockquote",
    "pre", "br", "hr", "dd", "dt", "dl", "figure", "figcaption", "body",
}  # fmt: skip
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Elements whose text a reader reads apart from the running text: their paragraphs get that kind.
KIND_TAGS = {"figcaption": "caption", "caption": "caption", "blockquote": "quote", "address": "byline"}
# Class names and ARIA roles (whole tokens) that mark such an element; never on the page's or article's own element.
KIND_CLASS = {
    "byline": "byline", "author": "byline", "dateline": "byline", "caption": "caption", "wp-caption-text": "caption",
    "figure-caption": "caption", "footnote": "note", "footnotes": "note", "endnote": "note", "endnotes": "note",
    "doc-footnote": "note", "doc-endnote": "note", "doc-endnotes": "note", "pullquote": "quote", "pull-quote": "quote",
    "quote-box": "quote", "quotebox": "quote",
}  # fmt: skip
NOT_KIND_TAGS = {"html", "body", "article", "main"}
# The text of a link to a footnote: its marker ("1", "[2]", "*", "a"), not words of the sentence.
NOTE_MARKER_TEXT = re.compile(r"\s*\[?\s*(?:\d{1,3}|[a-z]|[*†‡§¶]{1,3})\s*\]?\s*", re.IGNORECASE)

# <meta name|property> keys for each field, best first (scholarly and Dublin Core tags are the most deliberate).
META_TITLE = ("citation_title", "dc.title", "dcterms.title", "og:title")
META_AUTHORS = ("citation_author", "dc.creator", "dcterms.creator", "author", "article:author")
META_DATE = (
    "citation_publication_date", "citation_date", "dc.date", "dcterms.issued", "dcterms.date", "dcterms.created",
    "article:published_time", "date",
)  # fmt: skip
META_DESCRIPTION = ("description", "dc.description", "dcterms.description", "dcterms.abstract", "og:description")
META_CONTAINER = (
    "citation_journal_title", "citation_conference_title", "og:site_name", "dc.publisher", "dcterms.publisher",
    "citation_publisher",
)  # fmt: skip
META_KIND = ("dc.type", "dcterms.type")


class _Extractor(HTMLParser):
    def __init__(self, raw: str):
        super().__init__(convert_charrefs=False)
        self.raw = raw
        self.line_starts = [0] + [i + 1 for i, c in enumerate(raw) if c == "\n"]
        self.chars: list[str] = []
        self.pos: list[int] = []
        self.skip_depth = 0
        self.title: str | None = None
        self.meta: dict[str, list[str]] = {}  # <meta> name or property (lower case) -> contents, in page order
        self._in_title = False
        self.kinds: list[tuple[str, str]] = []  # open elements of another kind than the body: (tag, kind)
        self.dropped: list[tuple[str, int, int]] = []  # (rule, raw start, raw end) of what is not text: tags, chrome
        self._skip_from: tuple[str, int] | None = None
        # Footnotes: each element with an id inside a note, as (id, first char, end char) of self.chars; each
        # link to "#id" whose text is a marker, as (id, raw offset of the link, first char, end char).
        self.targets: list[tuple[str, int, int]] = []
        self.links: list[tuple[str, int, int, int]] = []
        self._open_ids: list[tuple[str, str, int, bool]] = []  # (tag, id, first char, inside a note)
        self._link: tuple[str, int, int] | None = None  # the open <a href="#id">: (id, raw offset, first char)

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.line_starts[line - 1] + col

    def _emit(self, text: str, at: int, step: bool = True) -> None:
        if self.skip_depth or self._in_title:
            return
        for i, ch in enumerate(text):
            self.chars.append(ch)
            self.pos.append(at + i if step else at)

    def _tag_span(self, end_tag: bool) -> tuple[int, int]:
        at = self._offset()
        if end_tag or not self.get_starttag_text():
            return at, (self.raw.find(">", at) + 1 or len(self.raw))
        return at, at + len(self.get_starttag_text())

    def handle_starttag(self, tag, attrs):
        self.dropped.append(("HTML markup (tags)", *self._tag_span(False)))
        if tag in SKIP and not self.skip_depth:
            self._skip_from = (tag, self._offset())
        elif tag == "title":
            self._skip_from = (tag, self._offset())
        if tag == "meta":
            a = {k.lower(): v for k, v in attrs if v is not None}
            key, content = (a.get("name") or a.get("property") or "").lower(), one_line(a.get("content"))
            if key and content:
                self.meta.setdefault(key, []).append(content)
        elif tag in SKIP:
            self.skip_depth += 1
        elif tag == "title":
            self._in_title = True
        else:
            self._open(tag, attrs)

    def _open(self, tag: str, attrs) -> None:
        if not self.skip_depth:
            self._footnote_start(tag, attrs)
        if kind := self._kind_of(tag, attrs):
            self.kinds.append((tag, kind))
            self._break()
        elif tag in HEADINGS:
            self._emit("\n" + HEADING_MARK, self._offset(), step=False)
        elif tag in BLOCK:
            self._break()

    def _footnote_start(self, tag: str, attrs) -> None:
        a = {k.lower(): v or "" for k, v in attrs}
        if tag == "a" and a.get("href", "").startswith("#") and len(a["href"]) > 1:
            self._link = (a["href"][1:], self._offset(), len(self.chars))
        if a.get("id"):
            if self._open_ids and self._open_ids[-1][0] == tag == "li":  # an unclosed <li> ends at the next
                self._footnote_end(tag)
            inside = any(k == "note" for _, k in self.kinds) or self._kind_of(tag, attrs) == "note"
            self._open_ids.append((tag, a["id"], len(self.chars), inside))

    def _footnote_end(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            target, at, first = self._link
            if NOTE_MARKER_TEXT.fullmatch("".join(self.chars[first:])):
                self.links.append((target, at, first, len(self.chars)))
            self._link = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            _, ident, first, inside = self._open_ids.pop()
            if inside:
                self.targets.append((ident, first, len(self.chars)))

    @staticmethod
    def _kind_of(tag: str, attrs) -> str | None:
        if tag in KIND_TAGS:
            return KIND_TAGS[tag]
        if tag in NOT_KIND_TAGS:
            return None
        a = {k.lower(): v or "" for k, v in attrs}
        tokens = " ".join((a.get("class", ""), a.get("role", ""), a.get("itemprop", ""))).lower().split()
        return next((KIND_CLASS[t] for t in tokens if t in KIND_CLASS), None)

    def _break(self) -> None:
        """A paragraph break; inside a caption, note, byline or quote, the next paragraph is of its kind."""
        self._emit("\n\n" + (KIND_MARKS[self.kinds[-1][1]] if self.kinds else ""), self._offset(), step=False)

    def handle_endtag(self, tag):
        span = self._tag_span(True)
        self.dropped.append(("HTML markup (tags)", *span))
        if not self.skip_depth:
            self._footnote_end(tag)
        if self._skip_from and (tag == "title" or (tag in SKIP and self.skip_depth == 1)):
            what = "metadata" if tag == "title" else "page chrome or code"
            self.dropped.append((f"HTML <{self._skip_from[0]}> element ({what})", self._skip_from[1], span[1]))
            self._skip_from = None
        if tag in SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif any(t == tag for t, _ in self.kinds):
            while self.kinds and self.kinds.pop()[0] != tag:
                pass
            self._break()
        elif tag in HEADINGS or tag in BLOCK:
            self._break()

    def handle_comment(self, data):
        at = self._offset()
        self.dropped.append(("HTML markup (comments, declarations)", at, at + len(data) + 7))

    def handle_decl(self, decl):
        at = self._offset()
        self.dropped.append(("HTML markup (comments, declarations)", at, at + len(decl) + 3))

    def handle_data(self, data):
        if self._in_title:
            self.title = (self.title or "") + data
        self._emit(data.replace("\n", " "), self._offset())

    def handle_entityref(self, name):
        self._emit(unescape(f"&{name};"), self._offset(), step=False)

    def handle_charref(self, name):
        self._emit(unescape(f"&#{name};"), self._offset(), step=False)


def html_metadata(meta: dict[str, list[str]], title: str | None) -> Metadata:
    """The page's metadata from its <meta> tags; its <title> when no tag names the title."""

    def first(keys: tuple[str, ...]) -> str:
        return next((v for k in keys for v in meta.get(k, []) if v), "")

    # Every author the first present key lists (citation_author is repeated, one tag per author); a URL is a
    # profile link (article:author), not a name.
    authors = next(([v for v in meta[k] if v] for k in META_AUTHORS if meta.get(k)), [])
    authors = [n for v in authors if not v.startswith(("http://", "https://")) for n in names(v)]
    return Metadata(
        title=first(META_TITLE) or one_line(title) or None,
        authors=authors,
        year=year_of(first(META_DATE)),
        description=first(META_DESCRIPTION),
        kind=first(META_KIND) or ("journal article" if meta.get("citation_journal_title") else ""),
        container=first(META_CONTAINER),
    )


def html_dropped(raw: str) -> list[tuple[str, int, int]]:
    """What of an HTML page is not its visible text, by rule: tags, comments, chrome elements (corpus.audit)."""
    parser = _Extractor(raw)
    parser.feed(raw)
    parser.close()
    cited = {ident for ident, a, b in parser.targets if "".join(parser.chars[a:b]).strip()}
    markers = [(a, b) for ident, _, a, b in parser.links if ident in cited and b > a]
    return parser.dropped + [("footnote reference", parser.pos[a], parser.pos[b - 1] + 1) for a, b in markers]


@dataclass
class Page:
    """An HTML page's visible text (headings and kinds marked, footnote markers gone), its metadata, and its
    footnotes: each note (an element with an id inside a footnote or endnote) and where a link cites it."""

    text: MappedText
    meta: Metadata
    notes: dict[str, Note] = field(default_factory=dict)  # the note's id -> the note
    note_refs: list[tuple[str, int]] = field(default_factory=list)  # (id, raw offset of the link)


def html_page(raw: str) -> Page:
    parser = _Extractor(raw)
    parser.feed(raw)
    parser.close()
    text, pos = "".join(parser.chars), np.array(parser.pos, dtype=np.int64)
    notes = {}
    for ident, a, b in parser.targets:
        words = text[a:b].strip()
        if words:
            lead = a + len(text[a:b]) - len(text[a:b].lstrip())
            notes.setdefault(
                ident, Note(ident, " ".join(words.split()), int(pos[lead]), int(pos[lead + len(words) - 1]) + 1)
            )
    links = [(ident, at, a, b) for ident, at, a, b in parser.links if ident in notes]
    mt = MappedText(text, pos, len(raw))
    # The marker goes from the text, as a Markdown footnote's does ("war.1" would read as a number).
    mt = mt.replace([(a, b, " " if _between_words(text, a, b) else "") for _, _, a, b in links])
    return Page(mt, html_metadata(parser.meta, parser.title), notes, [(ident, at) for ident, at, _, _ in links])


def _between_words(text: str, a: int, b: int) -> bool:
    return 0 < a and b < len(text) and text[a - 1].isalnum() and text[b].isalnum()


def html_to_mapped(raw: str) -> tuple[MappedText, Metadata]:
    """Visible text of an HTML page (headings marked), and its metadata."""
    page = html_page(raw)
    return page.text, page.meta
