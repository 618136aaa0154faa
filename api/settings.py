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
