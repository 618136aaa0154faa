"""Citations for passages: one ready-to-paste string and CSL-JSON, shared by the API, the CLI and the page.

The text is Chicago-like:  Author. “Title.” Origin. Kind, Year. Section “…”. file, chars start–end.
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
    ("essay", "article"),
    ("article", "article"),
    ("statement", "report"),
    ("report", "report"),
    ("book", "book"),
]
CONTAINED = {"entry-encyclopedia", "entry-dictionary", "chapter", "article"}  # origin is a container-title
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
    """A personal name as family/given; an organisation (or anything unusual) as a literal."""
    words = name.split()
    if len(words) < 2 or len(words) > 5 or ORGANISATION.search(name) or "," in name:
        return {"literal": name}
    i = len(words) - 1
    while i > 1 and words[i - 1].lower() in PARTICLES:
        i -= 1
    return {"family": " ".join(words[i:]), "given": " ".join(words[:i])}


def short_origin(origin: str) -> str:
    """The origin's first clause: the manifest adds remarks about the copy after a semicolon."""
    return origin.split(";", 1)[0].strip().rstrip(".")


def location(section: str | None, start: int, end: int, file: str) -> str:
    where = f"{file}, chars {start}–{end}"
    return f"Section “{section}”; {where}" if section else where


def _sentence(s: str) -> str:
    """End with a full stop unless the text already ends a sentence (inside a closing quote or not)."""
    s = s.strip()
    return s if not s or s.rstrip("”\"’'")[-1:] in (".", "?", "!") else s + "."


def make_citation(work: Work, section: str | None, start: int, end: int, file: str) -> Citation:
    """Cite the passage raw[start:end] of `file`, which lies in `work`."""
    year = str(work.year) if work.year is not None else "n.d."
    origin = short_origin(work.origin)
    parts = [
        _sentence(work.author) if work.authors else "",
        f"“{_sentence(work.title)}”",
        _sentence(origin) if origin else "",
        _sentence(f"{work.kind[:1].upper()}{work.kind[1:]}, {year}" if work.kind else year),
        f"Section “{_sentence(section)}”" if section else "",
        _sentence(f"{file}, chars {start}–{end}"),
    ]
    text = " ".join(p for p in parts if p)

    kind = csl_type(work.kind)
    csl: dict = {
        "id": f"{work.id}:{start}-{end}",
        "type": kind,
        "title": work.title,
        "author": [csl_name(a) for a in work.authors],
        "genre": work.kind,
        "note": location(section, start, end, file),
    }
    if work.year is not None:
        csl["issued"] = {"date-parts": [[work.year]]}
    if origin:
        csl["container-title" if kind in CONTAINED else "publisher"] = origin
    if section:
        csl["section"] = section
    return Citation(text=text, csl=csl)
