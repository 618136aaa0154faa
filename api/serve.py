"""`qa serve`: build the index if there is none, then run uvicorn (one process, or a factory per worker)."""

from __future__ import annotations

import importlib.util
import logging
import os

import click
import uvicorn

from api.logs import configure_logging
from api.settings import Settings
from index import stores

log = logging.getLogger("api")


def has_index(location) -> bool:
    if stores.shared(location):
        return stores.exists(location)
    return location.is_dir() and any(location.iterdir())


def why_build(s: Settings) -> str | None:
    """Build when there is no index or the corpus changed since it was built. A damaged index is not
    rebuilt behind the user's back: loading refuses it with a message saying how to rebuild. A shared store
    (a database) is built when it has no collection, never because this server's corpus differs: its
    collection is the one every server serves."""
    location = s.index_location
    if not has_index(location):
        return f"no index at {stores.describe(location)}"
    built_from = stores.built_from(location)
    if built_from is None or stores.shared(location):
        return None
    from corpus.ingest import corpus_files

    changed = built_from != corpus_files(s.corpus_dir)  # its manifest.toml (titles, viewpoints) too
    return "the corpus changed since the index was built (its files or manifest.toml)" if changed else None


def ensure_index(s: Settings) -> None:
    """Build the index first when there is none or the corpus changed (`qa serve` and `qa mcp` alike)."""
    if not why_build(s):
        return
    from qa.build import build_default_index
    from qa.collection import writer_lock

    with writer_lock(s.index_location):
        if reason := why_build(s):  # again: another writer may have built it while this one waited
            log.info("%s: building it from %s", reason, s.corpus_dir)
            build_default_index(s.corpus_dir, s.index_location, progress=True)


def http_limits(s: Settings) -> dict:
    """uvicorn options for the request head's size and time limits (the body's are in api.middleware)."""
    options = dict(timeout_keep_alive=s.keep_alive_seconds)
    if importlib.util.find_spec("httptools") is None:  # h11 limits the head's size, not its time
        return options | dict(http="h11", h11_max_incomplete_event_size=s.max_header_bytes)
    from api import protocol

    protocol.configure(s)
    return options | dict(http="api.protocol:LimitedHttpToolsProtocol")


def run(s: Settings) -> None:
    configure_logging(s.log_level, s.log_format)
    ensure_index(s)
    options = dict(host=s.host, port=s.port, log_config=None, access_log=False, log_level=s.log_level)
    options |= http_limits(s)
    if s.workers > 1:
        # Each worker process builds its own app from the environment: pass our settings down.
        os.environ.update(
            QA_INDEX_DIR=str(s.index_dir.absolute()),
            QA_CORPUS_DIR=str(s.corpus_dir.absolute()),
            QA_DATA_DIR=str(s.data_dir.absolute()),
            QA_LOG_LEVEL=s.log_level,
            QA_LOG_FORMAT=s.log_format,
            QA_CORS_ORIGINS=",".join(s.cors_origins),
            QA_RELOAD_SECONDS=str(s.reload_seconds),
            QA_STORE=s.store or "",
            QA_MAX_BODY_BYTES=str(s.max_body_bytes),
            QA_BODY_TIMEOUT_SECONDS=str(s.body_timeout_seconds),
            QA_MAX_HEADER_BYTES=str(s.max_header_bytes),
            QA_HEADER_TIMEOUT_SECONDS=str(s.header_timeout_seconds),
        )
        uvicorn.run("api.app:create_app_from_env", factory=True, workers=s.workers, **options)
        return

    from api.app import create_app

    server: uvicorn.Server | None = None

    def stop(reason: str) -> None:  # the engine could not load: stop serving rather than answer 503s
        if server is not None:
            server.should_exit = True

    app = create_app(s, on_load_failure=stop)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    server.run()
    if app.state.slot.error:
        raise click.ClickException(app.state.slot.error)
