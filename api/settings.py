"""Service settings: environment variables prefixed QA_ (or a .env file), e.g. QA_INDEX_DIR=/srv/index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import corpus


def default_corpus_dir() -> Path:
    return Path(corpus.__file__).resolve().parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    index_dir: Path = Field(default_factory=lambda: Path("var/index"))
    corpus_dir: Path = Field(default_factory=default_corpus_dir)
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
