"""Response models of the API's own endpoints (the ask contract itself is qa.schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from corpus.model import Work
from qa.schema import PassageOut


class WorkOut(BaseModel):
    id: str
    file: str
    title: str
    authors: list[str]
    author: str
    year: int | None
    date_note: str = ""
    kind: str
    origin: str = Field(description="where the text comes from: edition, publisher, revision")
    viewpoint: str = Field(description="one line a librarian can rely on")
    viewpoint_label: str
    inferred: bool = Field(False, description="true when the file had no manifest entry")

    @classmethod
    def of(cls, w: Work) -> WorkOut:
        d = w.to_dict()
        return cls(**{k: d[k] for k in cls.model_fields if k in d}, author=w.author)


class PassageContext(BaseModel):
    """A passage with its neighbours in the same work, in reading order."""

    passage: PassageOut
    before: list[PassageOut] = []
    after: list[PassageOut] = []
    work: WorkOut | None = None

    @classmethod
    def of(cls, found: dict, engine) -> PassageContext:
        out = cls(**found)
        work = engine.work(out.passage.source.work)
        out.work = WorkOut.of(work) if work else None
        return out
