"""Logging: plain or JSON lines on stderr, each carrying the request id of the request it belongs to."""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="-")
EXTRA = ("request_id", "method", "path", "status", "ms", "client")
# Libraries whose INFO and DEBUG lines narrate their internals: sentence-transformers' "Loading
# SentenceTransformer model from ...", bm25s's "Building index from IDs objects" (bm25s sets its own logger
# to DEBUG when imported, so a level set here would not last), faiss.loader's CPU probing. Their warnings
# and errors still show.
QUIET_BELOW_WARNING = ("bm25s", "faiss", "sentence_transformers", "transformers", "torch", "onnxruntime", "spacy")


class PlainFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return super().format(record)


class JsonFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        out |= {k: getattr(record, k) for k in EXTRA[1:] if hasattr(record, k)}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record is emitted: a test runner that swaps sys.stderr and closes
    its stand-in must not leave the handler writing to a closed stream."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


class LibraryNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.partition(".")[0] not in QUIET_BELOW_WARNING


def configure_logging(level: str = "info", fmt: str = "plain") -> None:
    """Send our logs, uvicorn's and Python warnings through one handler on stderr, in the chosen format:
    one line per event (a JSON object per line with fmt="json")."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    handler.addFilter(LibraryNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access log replaces it
    logging.captureWarnings(True)  # warnings.warn() as log records, not free-form lines of their own


@contextmanager
def command_logging(level: str = "info", fmt: str = "plain") -> Iterator[None]:
    """configure_logging for one command, then the set-up it found: a command run in-process (a test's
    CliRunner) must not leave the next one logging to its output."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    captured = getattr(warnings.showwarning, "__module__", "") == "logging"
    configure_logging(level, fmt)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        if not captured:
            logging.captureWarnings(False)
