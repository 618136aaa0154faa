"""The corpus data model: works, passages and the spans that tie them to raw files.

Offsets are character (code point) offsets into a file decoded as UTF-8 (or as UTF-16/32 when it starts with
such a byte-order mark, which is not counted), end exclusive: corpus.ingest.read_text's text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Span:
    file: str
    start: int
    end: int


@dataclass
class Work:
    """One work inside a corpus file, as the manifest (or inference) describes it."""

    id: str
    file: str
    title: str
    authors: list[str]
    year: int | None
    kind: str
    origin: str
    viewpoint: str  # one line a librarian can rely on
    viewpoint_label: str  # a key of the manifest's viewpoint vocabulary
    date_note: str = ""
    starts_at: str = ""  # marker text where the work begins ("" = start of file)
    ends_at: str = ""  # marker text where the work ends ("" = next work or end of file)
    inferred: bool = False  # True when the file had no manifest entry
    description: str = ""  # what the file says it is about (front matter, meta description, document info)

    @property
    def author(self) -> str:
        return ", ".join(self.authors)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Note:
    """A footnote cited by a passage (e.g. <sup>16</sup> in the text)."""

    marker: str
    text: str
    start: int
    end: int
    passage: str | None = None  # id of the note passage that holds the note's text
    cited_at: list[int] = field(default_factory=list)  # raw offsets of its markers in the text

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("passage", "cited_at"):  # an unlinked note's record stays as it was
            if not d[key]:
                del d[key]
        return d


# What a passage is to the reader of its work. "body": the running text (and its headings); "note": a footnote or
# endnote (or a prose note among references); "caption": an image's or a table's caption; "byline": a byline or
# colophon (who wrote or published the work, for whom, when); "quote": a block quotation set apart (a quote box).
PASSAGE_KINDS = ("body", "note", "caption", "byline", "quote")


@dataclass
class Passage:
    """A citable span of one work: `text` is the cleaned text of raw[start:end].

    Every word of `text` appears, in order, in raw[start:end]. `sentences` are the raw spans
    of the passage's sentences, in order, used for highlights and attribution offsets.
    """

    id: str
    file: str
    start: int
    end: int
    work: str
    section: str | None
    text: str
    sentences: list[tuple[int, int]] = field(default_factory=list)
    also_in: list[Span] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    pages: tuple[int, int] | None = None  # first and last page it lies on, in a paginated file (PDF)
    kind: str = "body"  # one of PASSAGE_KINDS
    cited_by: list[str] = field(default_factory=list)  # a note's: ids of the passages whose text carries its marker

    @property
    def words(self) -> int:
        return len(self.text.split())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sentences"] = [list(s) for s in self.sentences]
        if self.pages is None:  # an index of an unpaginated collection stays as it was
            del d["pages"]
        else:
            d["pages"] = list(self.pages)
        d["notes"] = [n.to_dict() for n in self.notes]
        if self.kind == "body":  # an index of body passages only stays as it was
            del d["kind"]
        if not self.cited_by:
            del d["cited_by"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Passage:
        return cls(
            id=d["id"],
            file=d["file"],
            start=d["start"],
            end=d["end"],
            work=d["work"],
            section=d.get("section"),
            text=d["text"],
            sentences=[tuple(s) for s in d.get("sentences", [])],
            also_in=[Span(**s) for s in d.get("also_in", [])],
            notes=[Note(**n) for n in d.get("notes", [])],
            pages=tuple(d["pages"]) if d.get("pages") else None,
            kind=d.get("kind", "body"),
            cited_by=list(d.get("cited_by", [])),
        )
