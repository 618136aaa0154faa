"""Service settings: environment variables prefixed QA_ (or a .env file), e.g. QA_DATA_DIR=/srv/qa.

A collection lives in a data directory: its documents and manifest in `collection/`, its index in `index/`.
The default is the platform's user data directory (~/.local/share/verbatim-qa on Linux); the first time it
has no collection, the bundled demo collection is copied there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api import DISTRIBUTION


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(DISTRIBUTION, appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # Each defaults to a directory of data_dir; set either to keep it elsewhere.
    corpus_dir: Path = Field(None, validate_default=False)  # filled in by _in_data_dir
    index_dir: Path = Field(None, validate_default=False)
    # QA_STORE: where the index lives. Unset: files in index_dir. postgresql://user@host:port/db: a PostgreSQL
    # database with pgvector, which several servers can share (README, "Scaling out").
    store: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    # QA_CORS_ORIGINS: comma-separated ("https://a.example,https://b.example") or a JSON list.
    cors_origins: Annotated[list[str], NoDecode] = []
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["plain", "json"] = "plain"
    # How long a request waits for the engine while it is still loading before it gets a 503.
    ready_wait_seconds: float = Field(120.0, ge=0)
    # How often to look for a rebuilt index to swap in (`qa index build` / `qa index add`); 0: never.
    reload_seconds: float = Field(2.0, ge=0)
    # HTTP limits, so a slow or lying client cannot hold a connection or memory for long.
    # A request body over this many bytes gets 413: at once if its Content-Length says so, else as it streams.
    # A question is at most 1,000 characters; this leaves room for filters.
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # A body that has not fully arrived this long after the request began gets 408 (Content-Length lied).
    body_timeout_seconds: float = Field(10.0, gt=0)
    # Request line and headers together; over this the connection gets 431 and is closed.
    max_header_bytes: int = Field(32 * 1024, ge=1024)
    # A connection must send a complete request head this soon after it opens (or after its previous
    # response); else it is closed. Bounds connections that open and send nothing, or send headers slowly.
    header_timeout_seconds: float = Field(10.0, gt=0)
    # An idle keep-alive connection is closed after this long (uvicorn's timeout_keep_alive).
    keep_alive_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _in_data_dir(self):
        if self.index_dir is None:
            self.index_dir = self.data_dir / "index"
        if self.corpus_dir is None:
            from corpus.collection import seed_demo

            self.corpus_dir = self.data_dir / "collection"
            seed_demo(self.corpus_dir)  # a new user's collection starts as the demo, theirs to change
        return self

    @property
    def index_location(self):
        """What index/ is handed: the store if one is configured, else the index directory."""
        from index.stores import location_of

        return location_of(self.index_dir, self.store)

    @field_validator("store", mode="before")
    @classmethod
    def _store_url(cls, v):
        if isinstance(v, str) and not v.strip():
            return None
        if v is not None and not str(v).startswith(("postgresql://", "postgres://")):
            raise ValueError("QA_STORE / --store: expected postgresql://user@host:port/db (or unset for files)")
        return v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v):
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                return json.loads(v)
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v
