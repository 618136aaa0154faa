"""The ask request and response: the stable JSON contract shared by the API, the CLI and the web page."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_QUESTION_CHARS = 1000
MAX_FILTER_VALUES = 100
MAX_FILTER_VALUE_CHARS = 200

# A character that is neither whitespace nor a control character, spelled out code point by code point
# because `\s` differs between engines: Python's includes U+001C..U+001F and U+0085, ECMA-262's (what
# JSON Schema clients use) includes U+FEFF. Excluded: C0 and C1 controls, U+007F, and every character
# that either engine calls whitespace. The same text is the schema's `pattern` and the validator's regex,
# and reads the same in Python's re, ECMA-262 (with or without the u flag) and pydantic's Rust regex.
VISIBLE_CHAR = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_VISIBLE = re.compile(VISIBLE_CHAR)

FilterValue = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILTER_VALUE_CHARS)]


def _whole_number(v):
    """JSON has one number type: 10.0 is the integer 10 (as JSON Schema says), `true` is not a number."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _values(what: str):
    bounds = f"at most {MAX_FILTER_VALUES} values, each a non-empty string of at most {MAX_FILTER_VALUE_CHARS} "
    return Field(None, max_length=MAX_FILTER_VALUES, description=f"{what}; {bounds}characters")


class Filters(BaseModel):
    """Restrict the answer to some works. Every field is optional; values are checked against the corpus
    (once the index is loaded, the schema lists the values each filter accepts). An empty list does not
    filter."""

    model_config = ConfigDict(extra="forbid", strict=True)  # strict: `true` is not a year

    work: list[FilterValue] | None = _values("work ids")
    author: list[FilterValue] | None = _values("author names as in the manifest")
    kind: list[FilterValue] | None = _values("work kinds, e.g. 'encyclopedia article'")
    viewpoint: list[FilterValue] | None = _values("viewpoint labels from the manifest vocabulary")
    holder: list[FilterValue] | None = _values("holders named by passage attributions")
    year_from: int | None = Field(None, description="only works from this year on (inclusive)")
    year_to: int | None = Field(
        None, description="only works up to this year (inclusive); must not be earlier than year_from, else 422"
    )

    _years = field_validator("year_from", "year_to", mode="before")(_whole_number)

    @field_validator("year_to")
    @classmethod
    def _not_before_year_from(cls, v, info):
        # A field validator (not a model validator) so the 422 names filters.year_to.
        start = info.data.get("year_from")
        if v is not None and start is not None and v < start:
            raise ValueError(f"year_to ({v}) must not be earlier than year_from ({start})")
        return v


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(
        ...,
        description="a question in plain language: at least one character that is neither whitespace nor a "
        "control character",
        min_length=1,
        max_length=MAX_QUESTION_CHARS,
        pattern=VISIBLE_CHAR,
    )
    top_k: int = Field(10, ge=1, le=50, description="how many passages to return, 1-50")
    filters: Filters | None = Field(
        None, description="only passages from the works that match every given field; omit for the whole collection"
    )
    diversify: bool = Field(True, description="cover every viewpoint the corpus holds in the top results")

    _top_k = field_validator("top_k", mode="before")(_whole_number)

    @field_validator("question", mode="before")
    @classmethod
    def _must_be_text(cls, v):
        if not isinstance(v, str):
            raise ValueError("question must be a string")
        if not _VISIBLE.search(v):
            raise ValueError("question must not be empty, whitespace or control characters")
        return v


class ReasonCode(StrEnum):
    """Why the service answered or abstained. answered: the passages support an answer. no_passages: no
    passage matches (e.g. the filters leave none). off_topic: no sentence is close to the question.
    focus_word_missing: the collection never uses the word the question asks about ("what illness...").
    key_terms_missing: the closest passages lack the question's key terms. no_number: the question asks
    how many or how much and no close sentence gives a number. no_support: close passages exist, but none
    supports an answer by the support model."""

    answered = "answered"
    no_passages = "no_passages"
    off_topic = "off_topic"
    focus_word_missing = "focus_word_missing"
    key_terms_missing = "key_terms_missing"
    no_number = "no_number"
    no_support = "no_support"


class Highlight(BaseModel):
    start: int = Field(..., description="raw-file offset where the highlighted sentence(s) begin")
    end: int = Field(..., description="raw-file offset just after the highlighted sentence(s)")
    text: str = Field("", description="the highlighted sentence(s) exactly as they appear in the passage text")


class SpanOut(BaseModel):
    file: str = Field(..., description="corpus file name")
    start: int = Field(..., description="offset in the raw file where the span begins")
    end: int = Field(..., description="offset in the raw file just after the span")


class Source(BaseModel):
    file: str = Field(..., description="corpus file the passage is quoted from")
    start: int = Field(..., description="offset in the raw file where the passage begins")
    end: int = Field(..., description="offset in the raw file just after the passage")
    work: str = Field(..., description="id of the work (see /v1/works/{work_id})")
    title: str = Field(..., description="the work's title")
    author: str = Field(..., description="the work's author(s), as one display string")
    year: int | None = Field(..., description="year of the work, null when unknown")
    section: str | None = Field(..., description="heading of the section the passage is in, null if none")
    kind: str = Field(..., description="kind of work, e.g. 'encyclopedia article'")
    passage_kind: str = Field(
        "body",
        description="what the passage is in its work: 'body' (running text), 'note' (a footnote or endnote), "
        "'caption' (an image's or table's caption), 'byline' (byline or colophon), 'quote' (a quote box)",
    )
    page: int | None = Field(None, description="page the passage begins on, in a paginated file (PDF); else null")
    page_end: int | None = Field(None, description="page the passage ends on (= page on one page); else null")


class Attribution(BaseModel):
    holder: str = Field(..., description="who holds the view: a person, group, or the work's own voice")
    cue: str = Field(..., description="the words that attribute the view ('argues', 'according to'), or 'author'")
    start: int = Field(..., description="raw-file offset where the attributed text begins")
    end: int = Field(..., description="raw-file offset just after the attributed text")
    level: str = Field("reported", description="'author' for the work's own voice, 'reported' for quoted views")


class ViewpointOut(BaseModel):
    label: str = Field(..., description="viewpoint label from the manifest vocabulary")
    description: str = Field("", description="what the viewpoint is, in one line")


class Citation(BaseModel):
    text: str = Field(..., description="a human-readable citation of the passage")
    csl: dict = Field(..., description="the same citation as CSL-JSON (for reference managers)")


class NoteOut(BaseModel):
    marker: str = Field(..., description="the note's marker in the text, e.g. '[3]'")
    text: str = Field(..., description="the note's text")
    start: int = Field(..., description="raw-file offset where the note begins")
    end: int = Field(..., description="raw-file offset just after the note")
    passage: str | None = Field(None, description="id of the note passage holding the note's text, if indexed")


class PassageOut(BaseModel):
    id: str = Field(..., description="stable passage id (see /v1/passages/{passage_id})")
    rank: int = Field(..., description="1 for the best passage; 0 for a passage shown as context")
    score: float = Field(..., description="relevance score; comparable only within one answer")
    supports_answer: bool = Field(
        ..., description="whether this passage supports an answer to the question (its support reaches the threshold)"
    )
    support: float = Field(
        0.0, ge=0, le=1, description="probability that this passage supports an answer (the support model's)"
    )
    text: str = Field(..., description="the passage's words verbatim from the source, markup removed")
    highlights: list[Highlight] = Field(..., description="the sentences that best answer the question, best first")
    source: Source = Field(..., description="where the passage comes from")
    also_in: list[SpanOut] = Field(..., description="other places holding the same text (copies of it)")
    viewpoint: ViewpointOut = Field(..., description="the viewpoint of the work the passage is from")
    attributions: list[Attribution] = Field(..., description="who holds the views the passage states")
    notes: list[NoteOut] = Field([], description="the source's notes referenced from the passage")
    cited_by: list[str] = Field(
        [], description="for a note passage: ids of the passages whose text carries its marker (empty otherwise)"
    )
    citation: Citation = Field(..., description="how to cite the passage")


class ViewpointGroup(BaseModel):
    label: str = Field(..., description="viewpoint label of the group's passages (their works'); a valid filter value")
    description: str = Field(..., description="what the viewpoint is, in one line (empty if not in the vocabulary)")
    holders: list[str] = Field(
        ..., description="who holds this viewpoint among the passages: their works' voices, known holders of it"
    )
    passages: list[str] = Field(..., description="ids of the returned passages from this viewpoint, in rank order")


class AskResponse(BaseModel):
    question: str = Field(..., description="the question as asked")
    answered: bool = Field(..., description="true when the passages support an answer; false: the service abstains")
    reason_code: ReasonCode = Field(..., description="why it answered or abstained, for programs")
    reason: str = Field(..., description="why it answered or abstained, for people (wording may change)")
    passages: list[PassageOut] = Field(..., description="ranked passages; when abstaining, the nearest ones")
    viewpoints: list[ViewpointGroup] = Field(..., description="the returned passages grouped by viewpoint")
    facets: dict[str, dict[str, int]] = Field(
        {}, description="facet ('viewpoint', 'holder', 'work') -> value -> how many returned passages have it"
    )
    took_ms: float = Field(..., description="time the service spent answering, in milliseconds")
