"""Citations for passages: one ready-to-paste string and CSL-JSON, shared by the API, the CLI and the page.

The text is Chicago-like:  Author. “Title.” Origin. Kind, Year. Section “….” file, p. N, chars start–end.
A missing field is left out (a missing year reads n.d.).
"""

from __future__ import annotations

import re

from corpus.model import Work
from qa.schema import Citation

# CSL item types by work kind (first matching keyword wins).
CSL_TYPES = [
    ("encyclopedia", "entry-encyclopedia"),
    ("dictionary", "entry-dictionary"),
    ("introduction", "chapter"),
    ("chapter", "chapter"),
    ("preface", "chapter"),
    ("foreword", "chapter"),
    ("front matter", "chapter"),
    ("journal", "article-journal"),
    ("essay", "article"),
    ("article", "article"),
    ("statement", "report"),
    ("report", "report"),
    ("book", "book"),
]
# Kinds that appear inside something else: the origin is their container-title.
CONTAINED = {"entry-encyclopedia", "entry-dictionary", "chapter", "article", "article-journal"}
ORGANISATION = re.compile(
    r"\b(party|committee|contributors|press|editors?|editorial|institute|university|society|union|"
    r"association|council|ministry|department|government|congress|league|wikipedia|staff|people)\b",
    re.IGNORECASE,
)
PARTICLES = {"van", "von", "de", "der", "den", "da", "di", "du", "la", "le", "del", "della", "ter", "ten"}


def csl_type(kind: str) -> str:
    kind = kind.lower()
    return next((t for key, t in CSL_TYPES if key in kind), "document")


def csl_name(name: str) -> dict:
    """A personal name as family/given ("Given Family" or "Family, Given"); an organisation, or anything
    unusual, as a literal."""
    words = name.split()
    if ORGANISATION.search(name) or not 2 <= len(words) <= 5:
        return {"literal": name}
    if name.count(",") == 1:
        family, given = (part.strip() for part in name.split(","))
        return {"family": family, "given": given} if family and given else {"literal": name}
    if "," in name:
        return {"literal": name}
    i = len(words) - 1
    while i > 1 and words[i - 1].lower() in PARTICLES:
        i -= 1
    return {"family": " ".join(words[i:]), "given": " ".join(words[:i])}


def short_origin(origin: str) -> str:
    """The origin's first clause: the manifest adds remarks about the copy after a semicolon (one outside
    brackets and quotes, so the clause kept is whole)."""
    depth = 0
    for i, ch in enumerate(origin):
        depth += (ch in "([{“‘") - (ch in ")]}”’")
        if ch == ";" and depth <= 0:
            origin = origin[:i]
            break
    return origin.strip().rstrip(".")


def page_label(pages: tuple[int, int] | None) -> str:
    if not pages:
        return ""
    first, last = pages
    return f"p. {first}" if first == last else f"pp. {first}–{last}"


def location(section: str | None, start: int, end: int, file: str, pages: tuple[int, int] | None = None) -> str:
    where = ", ".join(x for x in (file, page_label(pages), f"chars {start}–{end}") if x)
    return f"Section “{section}”; {where}" if section else where


def _clean(s: str | None) -> str:
    return " ".join((s or "").split())


def _sentence(s: str) -> str:
    """End with a full stop unless the text already ends a sentence (inside a closing quote or not)."""
    s = s.strip()
    return s if not s or s.rstrip("”\"’'")[-1:] in (".", "?", "!") else s + "."


def _quoted(s: str) -> str:
    """“s.” with the full stop inside; double quotes within s become single ones, so the quotes pair up."""
    s = s.replace("“", "‘").replace("”", "’")
    return f"“{_sentence(s)}”"


def make_citation(
    work: Work, section: str | None, start: int, end: int, file: str, pages: tuple[int, int] | None = None
) -> Citation:
    """Cite the passage raw[start:end] of `file`, which lies in `work` (on `pages`, first and last, if the file
    has pages). Any field of the work may be missing: a missing one is left out, never printed empty."""
    title, kind, section = _clean(work.title), _clean(work.kind), _clean(section) or None
    authors = [a for a in (_clean(a) for a in work.authors) if a]
    year = str(work.year) if work.year is not None else "n.d."
    origin = _clean(short_origin(work.origin))
    parts = [
        _sentence(", ".join(authors)),
        _quoted(title) if title else "",
        _sentence(origin),
        _sentence(f"{kind[:1].upper()}{kind[1:]}, {year}" if kind else year),
        f"Section {_quoted(section)}" if section else "",
        _sentence(location(None, start, end, file, pages)),
    ]
    text = " ".join(p for p in parts if p)
    return Citation(text=text, csl=_csl(work, title, authors, kind, origin, section, start, end, file, pages))


def _csl(work: Work, title, authors, kind, origin, section, start, end, file, pages) -> dict:
    """The citation as a CSL-JSON item: only variables that are known, each of its CSL type."""
    item_type = csl_type(kind)
    csl: dict = {"id": f"{work.id}:{start}-{end}", "type": item_type}
    if title:
        csl["title"] = title
    if authors:
        csl["author"] = [csl_name(a) for a in authors]
    if work.year is not None:
        csl["issued"] = {"date-parts": [[work.year]]}
    if kind:
        csl["genre"] = kind
    if origin:
        csl["container-title" if item_type in CONTAINED else "publisher"] = origin
    if section:
        csl["section"] = section
    if pages:
        csl["page"] = str(pages[0]) if pages[0] == pages[1] else f"{pages[0]}-{pages[1]}"
    if _clean(work.description):
        csl["abstract"] = _clean(work.description)
    csl["note"] = location(section, start, end, file, pages)
    return csl
