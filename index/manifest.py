"""The index manifest's schema and its checksum of itself: a manifest is trusted only once both hold.

The checksum (sha256 of every other field, canonical JSON) catches accidental damage: a flipped bit, a
hand edit. It is not a signature: anyone who can write the index can recompute it. What protects the
quoted text from a deliberate edit is the comparison of every passage with the corpus file it cites
(index/store.py, check_verbatim).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

CHECKSUM_KEY = "checksum"
SHA256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"  # never "", "." or "..": a name starts with a letter, digit or "_"
NAME = re.compile(_NAME)
RELPATH = re.compile(rf"{_NAME}(?:/{_NAME})*")  # names inside the index directory, "/"-separated
Name = Annotated[str, StringConstraints(pattern=rf"^{_NAME}$")]
RelPath = Annotated[str, StringConstraints(pattern=rf"^{RELPATH.pattern}$")]
Count = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    # Strict: a "1" where 1 belongs is damage, not something to coerce. Unknown fields are refused too.
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    # Sections whose extra keys are informational (library settings, export probes): the checksum covers them.
    model_config = ConfigDict(extra="allow", strict=True)


class ModelInfo(_Strict):
    name: str
    dim: Annotated[int, Field(gt=0)]
    query_prefix: str
    passage_prefix: str
    section_prefix: bool


class Hnsw(_Strict):
    M: Annotated[int, Field(gt=0)]
    ef_construction: Annotated[int, Field(gt=0)]
    ef_search: Annotated[int, Field(gt=0)]


class IvfPq(_Open):
    nprobe: Annotated[int, Field(gt=0)]
    k_factor: Annotated[int, Field(gt=0)]


class Dense(_Open):
    file: RelPath
    type: Literal["flat_ip", "hnsw_flat", "ivfpq_refine"]
    hnsw: Hnsw | None = None
    ivfpq: IvfPq | None = None


class Lexical(_Open):
    dir: Name
    doc_count: Count


class EncoderInfo(_Open):
    backend: str
    file: RelPath | None = None
    tokenizer: RelPath | None = None


class Manifest(_Strict):
    format_version: int
    created: str
    model: ModelInfo
    corpus_files: dict[str, SHA256]
    passage_count: Count
    work_count: Count
    dense: Dense
    lexical: Lexical
    extra: list[Name]
    arrays: list[Name]
    libraries: dict[str, str]
    encoder: EncoderInfo
    files: Annotated[dict[RelPath, SHA256], Field(min_length=1)]
    checksum: SHA256


def checksum(manifest: dict) -> str:
    """sha256 of the manifest without its checksum field, as canonical JSON (sorted keys, no spaces)."""
    rest = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    text = json.dumps(rest, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def problem(manifest: dict) -> str | None:
    """Why the manifest cannot be trusted (naming the field), or None: schema first, then the checksum."""
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        return f"field {where!r} is malformed: {err['msg']}"
    if checksum(manifest) != manifest[CHECKSUM_KEY]:
        return "it does not match its own checksum (damaged or edited)"
    return None


def required_files(manifest: dict) -> set[str]:
    """The files the loader reads by name: each must be listed (and so checksummed) in "files"."""
    from index import layout

    names = {layout.PASSAGES_FILE, layout.WORKS_FILE, manifest["dense"]["file"]}
    names |= {f"{key}.json" for key in manifest["extra"]} | {f"{key}.npy" for key in manifest["arrays"]}
    names |= {f"{manifest['lexical']['dir']}/{name}" for name in layout.BM25_FILES}
    names |= {manifest["encoder"][k] for k in ("file", "tokenizer") if manifest["encoder"].get(k)}
    return names
