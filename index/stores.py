"""Where an index lives, behind one set of functions: everything above index/ passes a *location* and never
asks which store it is.

A location is an index directory (the embedded files, the default) or a PostgreSQL connection string
(`postgresql://user@host:port/db`, index/pg.py). build.build_index writes to either; open_index loads either
as a SearchIndex (the PostgreSQL one is a subclass with the same surface).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from index import layout
from index.pg import is_database, redacted
from index.store import SearchIndex

Location = Path | str


def location_of(index_dir: Path, store: str | None) -> Location:
    """The configured store (QA_STORE / --store) if any, else the index directory."""
    return store if store else Path(index_dir)


def describe(location: Location) -> str:
    return redacted(location) if is_database(location) else str(location)


def shared(location: Location) -> bool:
    """Whether the store is the collection itself, shared by servers that need no copy of its documents: they
    serve what the store holds, and a server never rebuilds it from a local corpus that may differ."""
    return is_database(location)


def open_index(location: Location, corpus_dir: Path | None = None) -> SearchIndex:
    """Load the index. A directory is checked against `corpus_dir` (staleness, verbatim quotations); a shared
    store was checked against the corpus it was built from, and its servers may have no copy of that corpus."""
    if is_database(location):
        from index.pg import PgSearchIndex

        return PgSearchIndex.open(location)
    from corpus.ingest import corpus_files

    expected = corpus_files(corpus_dir) if corpus_dir else None
    return SearchIndex.load(Path(location), expected_files=expected, corpus_dir=corpus_dir)


def exists(location: Location) -> bool:
    if is_database(location):
        from index.pg import generation

        return generation(location) is not None
    return (Path(location) / layout.MANIFEST_FILE).exists()


def generation(location: Location) -> tuple | None:
    """Identifies the index being served now, cheaply (polled by servers to pick up a rebuild): a rebuild of a
    directory swaps in a new manifest file; a build into the database moves its current version."""
    if is_database(location):
        from index.pg import generation as current

        return current(location)
    try:
        st = (Path(location) / layout.MANIFEST_FILE).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def built_from(location: Location) -> dict[str, str] | None:
    """The corpus files (name -> sha256) the index was built from; None if there is none or it is unreadable."""
    if is_database(location):
        from index.pg import built_from as recorded

        return recorded(location)
    import json

    try:
        return json.loads((Path(location) / layout.MANIFEST_FILE).read_text(encoding="utf-8"))["corpus_files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def catalogue(location: Location) -> tuple[dict[str, str], list[dict], list[dict]]:
    """The corpus files the index was built from (name -> sha256), its works, and the files its build skipped
    ({"file", "reason"}: the build's report, kept with the index); empty without an index."""
    if is_database(location):
        from index.pg import catalogue as recorded

        return recorded(location)
    import json

    try:
        works = json.loads((Path(location) / layout.WORKS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return {}, [], []
    try:
        skipped = json.loads((Path(location) / "skipped.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        skipped = []  # an index built before builds reported skipped files
    return dict(built_from(location) or {}), list(works), list(skipped)


@contextlib.contextmanager
def writer_lock(location: Location) -> Iterator[None]:
    """Held for a whole build, add or remove: one writer at a time (the second waits)."""
    if is_database(location):
        from index.pg import writer_lock as database_lock

        with database_lock(location):
            yield
        return
    with layout.writer_lock(Path(location)):
        yield


@contextlib.contextmanager
def try_writer_lock(location: Location) -> Iterator[bool]:
    """The writer lock if no writer holds it (yields True), else nothing (yields False); never waits."""
    if is_database(location):
        from index.pg import writer_lock as database_lock

        with database_lock(location, wait=False) as held:
            yield held
        return
    with layout.try_writer_lock(Path(location)) as held:
        yield held


def staging_dir(location: Location, corpus_dir: Path) -> Path:
    """Where an add or remove copies the corpus it builds from and records its commit: beside the index
    directory (recover() tidies it after a kill; the new index must be on the index's file system to be swapped
    in), or for a database beside the corpus directory (where its next writer finds a write killed midway)."""
    if is_database(location):
        return layout.sibling(Path(corpus_dir).absolute(), "staging")
    return layout.sibling(Path(location), "staging")


@contextlib.contextmanager
def tagged_write(location: Location, token: str) -> Iterator[None]:
    """A database's write in this block records `token` in the transaction that makes its version current."""
    from index.pg import tagged_write as tagged

    with tagged(token):
        yield


def committed(location: Location, token: str) -> bool:
    """Whether the database committed the write tagged `token` (waiting for one still in flight)."""
    from index.pg import committed as found

    return found(location, token)


def staging_target(location: Location, staging: Path) -> Location:
    """Where an add or remove builds the new index before publish(): in the staging directory; a database
    writes a new version in place (its transaction makes it current: nothing to swap)."""
    return location if is_database(location) else staging / "index"


def publish(built: Location, location: Location) -> None:
    if not is_database(location):
        layout.swap_in(Path(built), Path(location))


def recover(location: Location) -> None:
    """Tidy what a killed write left (a database rolls back on its own)."""
    if not is_database(location):
        layout.recover(Path(location))
