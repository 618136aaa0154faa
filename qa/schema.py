"""The ask request and response: the stable JSON contract shared by the API, the CLI and the web page."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_QUESTION_CHARS = 1000


def _whole_number(v):
    """JSON has one number type: 10.0 is the integer 10 (as JSON Schema says), `true` is not a number."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class Filters(BaseModel):
    """Restrict the answer to some works. Every field is optional; values are checked against the corpus."""

    model_config = ConfigDict(extra="forbid", strict=True)  # strict: `true` is not a year

    work: list[str] | None = Field(None, description="work ids")
    author: list[str] | None = Field(None, description="author names as in the manifest")
    kind: list[str] | None = Field(None, description="work kinds, e.g. 'encyclopedia article'")
    viewpoint: list[str] | None = Field(None, description="viewpoint labels from the manifest vocabulary")
    holder: list[str] | None = Field(None, description="holders named by passage attributions")
    year_from: int | None = None
    year_to: int | None = None

    _years = field_validator("year_from", "year_to", mode="before")(_whole_number)


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(
        ..., description="a question in plain language", min_length=1, max_length=MAX_QUESTION_CHARS, pattern=r"\S"
    )
    top_k: int = Field(10, ge=1, le=50)
    filters: Filters | None = None
    diversify: bool = Field(True, description="cover every viewpoint the corpus holds in the top results")

    _top_k = field_validator("top_k", mode="before")(_whole_number)

    @field_validator("question", mode="before")
    @classmethod
    def _must_be_text(cls, v):
        if not isinstance(v, str):
            raise ValueError("question must be a string")
        if not v.strip():
            raise ValueError("question must not be empty or whitespace")
        return v


class Highlight(BaseModel):
    start: int = Field(..., description="raw-file offset where the highlighted sentence(s) begin")
    end: int
    text: str = Field("", description="the highlighted sentence(s) exactly as they appear in the passage text")


class SpanOut(BaseModel):
    file: str
    start: int
    end: int


class Source(BaseModel):
    file: str
    start: int
    end: int
    work: str
    title: str
    author: str
    year: int | None
    section: str | None
    kind: str


class Attribution(BaseModel):
    holder: str
    cue: str
    start: int
    end: int
    level: str = Field("reported", description="'author' for the work's own voice, 'reported' for quoted views")


class ViewpointOut(BaseModel):
    label: str
    description: str = ""


class Citation(BaseModel):
    text: str
    csl: dict


class NoteOut(BaseModel):
    marker: str
    text: str
    start: int
    end: int


class PassageOut(BaseModel):
    id: str
    rank: int
    score: float
    supports_answer: bool
    text: str
    highlights: list[Highlight]
    source: Source
    also_in: list[SpanOut]
    viewpoint: ViewpointOut
    attributions: list[Attribution]
    notes: list[NoteOut] = []
    citation: Citation


class ViewpointGroup(BaseModel):
    label: str
    description: str
    holders: list[str]
    passages: list[str]


class AskResponse(BaseModel):
    question: str
    answered: bool
    reason: str
    passages: list[PassageOut]
    viewpoints: list[ViewpointGroup]
    facets: dict[str, dict[str, int]] = {}
    took_ms: float
