"""Response models of the API's own endpoints (the ask contract itself is qa.schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from corpus.model import Work
from qa.schema import PassageOut


class WorkOut(BaseModel):
    id: str = Field(description="stable work id, as the `work` filter and /v1/works/{work_id} take it")
    file: str = Field(description="corpus file the work is in")
    title: str = Field(description="the work's title")
    authors: list[str] = Field(description="author names as in the manifest")
    author: str = Field(description="the authors as one display string")
    year: int | None = Field(description="year of the work, null when unknown")
    date_note: str = Field("", description="what the year stands for when it needs saying, e.g. an undated revision")
    kind: str = Field(description="kind of work, e.g. 'encyclopedia article'")
    origin: str = Field(description="where the text comes from: edition, publisher, revision")
    viewpoint: str = Field(description="one line a librarian can rely on")
    viewpoint_label: str = Field(description="the work's viewpoint label from the manifest vocabulary")
    inferred: bool = Field(False, description="true when the file had no manifest entry")
    description: str = Field("", description="what the file says it is about (front matter, meta, document info)")

    @classmethod
    def of(cls, w: Work) -> WorkOut:
        d = w.to_dict()
        return cls(**{k: d[k] for k in cls.model_fields if k in d}, author=w.author)


class PassageContext(BaseModel):
    """A passage with its neighbours in the same work, in reading order."""

    passage: PassageOut = Field(description="the passage asked for")
    before: list[PassageOut] = Field([], description="passages just before it in the same work, in reading order")
    after: list[PassageOut] = Field([], description="passages just after it in the same work, in reading order")
    work: WorkOut | None = Field(None, description="the work the passage is from")

    @classmethod
    def of(cls, found: dict, engine) -> PassageContext:
        out = cls(**found)
        work = engine.work(out.passage.source.work)
        out.work = WorkOut.of(work) if work else None
        return out


class SkippedFile(BaseModel):
    """A file of the collection that is not in the index, and why."""

    file: str = Field(description="its name in the collection's folder")
    reason: str = Field(description="why it was not ingested, e.g. 'no text layer (scanned PDF?)'")


class InfoOut(BaseModel):
    """What is serving: the software, the collection and the index it answers from."""

    name: str = Field(description="the software's distribution name")
    version: str = Field(description="the software's version")
    collection: str = Field(description="the collection's name (the corpus manifest's, else its directory's)")
    model: str = Field(description="the embedding model the index was built with")
    passage_count: int = Field(description="passages in the index")
    work_count: int = Field(description="works in the index")
    index_built: str | None = Field(description="when the index was built (ISO 8601, UTC); null if not recorded")
    skipped: list[SkippedFile] = Field(
        [], description="files of the collection the build did not ingest, each with the reason (empty if none)"
    )
