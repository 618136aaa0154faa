"""HTML to cleaned text with raw offsets, using the standard library's tolerant parser."""

from __future__ import annotations

from html import unescape
from html.parser import HTMLParser

import numpy as np

from corpus.clean import HEADING_MARK
from corpus.mapped import MappedText

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


class _Extractor(HTMLParser):
    def __init__(self, raw: str):
        super().__init__(convert_charrefs=False)
        self.raw = raw
        self.line_starts = [0] + [i + 1 for i, c in enumerate(raw) if c == "\n"]
        self.chars: list[str] = []
        self.pos: list[int] = []
        self.skip_depth = 0
        self.title: str | None = None
        self._in_title = False

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.line_starts[line - 1] + col

    def _emit(self, text: str, at: int, step: bool = True) -> None:
        if self.skip_depth or self._in_title:
            return
        for i, ch in enumerate(text):
            self.chars.append(ch)
            self.pos.append(at + i if step else at)

    def handle_starttag(self, tag, attrs):
        if tag in SKIP:
            self.skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag in HEADINGS:
            self._emit("\n" + HEADING_MARK, self._offset(), step=False)
        elif tag in BLOCK:
            self._emit("\n\n", self._offset(), step=False)

    def handle_endtag(self, tag):
        if tag in SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in HEADINGS or tag in BLOCK:
            self._emit("\n\n", self._offset(), step=False)

    def handle_data(self, data):
        if self._in_title:
            self.title = (self.title or "") + data
        self._emit(data.replace("\n", " "), self._offset())

    def handle_entityref(self, name):
        self._emit(unescape(f"&{name};"), self._offset(), step=False)

    def handle_charref(self, name):
        self._emit(unescape(f"&#{name};"), self._offset(), step=False)


def html_to_mapped(raw: str) -> tuple[MappedText, str | None]:
    """Visible text of an HTML page (headings marked), and its <title>."""
    parser = _Extractor(raw)
    parser.feed(raw)
    parser.close()
    mt = MappedText("".join(parser.chars), np.array(parser.pos, dtype=np.int64), len(raw))
    title = " ".join(parser.title.split()) if parser.title else None
    return mt, title
