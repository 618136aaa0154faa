"""Changing a collection: adding and removing documents, one writer at a time, losing nothing.

Every write (`qa index build`, add, remove) holds the collection's writer lock from start to end: a second
writer waits for the first, so two adds at once both land. An add or a remove builds the new index from a
staging copy of the corpus next to the index, then records its changes there (the commit point), then puts
the changed files in place, and only then swaps the new index in. So a server never sees an index whose files
are not yet in the corpus; a write killed before its commit point leaves the collection as it was, and one
killed after it is finished by the next writer or loader (finish_interrupted): the old collection or the new
one, whole.

On a database store the build's own transaction makes the new version current (index/pg.py), and that is the
commit point: the staging directory (beside the corpus directory) holds the changes and a record naming the
write before the build starts, and the version's transaction records the same token. A write killed after
its transaction committed but before its files reached the corpus is finished by the next writer, or the next
loader given that corpus (a server starting), which finds the token in the database; one killed before is undone
(its staging directory removed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import uuid
from pathlib import Path

from corpus.collection import manifest_text, with_file_entry, without_file_entry, write_atomically
from corpus.ingest import FORMATS, MANIFEST_NAME, raw_text
from index import layout, stores

log = logging.getLogger(__name__)


def writer_lock(index_dir):
    """Held for a whole build, add or remove of the collection whose index is at index_dir (a location)."""
    return stores.writer_lock(index_dir)


def build(corpus_dir: Path, index_dir: Path, progress: bool = True) -> Path:
    """`qa index build`: the whole index from the corpus, under the writer lock."""
    from qa.build import build_default_index

    with writer_lock(index_dir):
        finish_interrupted(index_dir, locked=True, corpus_dir=corpus_dir)  # a database ahead of this corpus
        return build_default_index(corpus_dir, index_dir, progress=progress)


def add_documents(
    paths: list[Path],
    corpus_dir: Path,
    index_dir: Path,
    fields: dict | None = None,
    viewpoint_description: str | None = None,
    progress: bool = True,
) -> Path:
    """Add files to the collection and rebuild its index; `fields` (title, authors, year, kind, viewpoint,
    viewpoint_label) describe each added file in the collection's manifest.

    Every file is checked before anything changes: one that is not a readable document of a supported format,
    two files of the same name, or a file that would replace a different one of the same name raise ValueError.
    """
    _check_new(paths, corpus_dir)
    with writer_lock(index_dir):
        changes: dict[str, bytes | None] = {path.name: path.read_bytes() for path in paths}
        if fields:
            manifest = manifest_text(corpus_dir)
            for path in paths:
                manifest = with_file_entry(manifest, path.name, fields, viewpoint_description)
            changes[MANIFEST_NAME] = manifest.encode("utf-8")
        return _rewrite(corpus_dir, index_dir, changes, progress)


def remove_documents(names: list[str], corpus_dir: Path, index_dir: Path, progress: bool = True) -> Path:
    """Remove documents (by file name) and their manifest entries from the collection; rebuild its index."""
    missing = [n for n in names if Path(n).name != n or not (corpus_dir / n).is_file() or n == MANIFEST_NAME]
    if missing:
        raise ValueError(f"not a document of the collection at {corpus_dir}: {', '.join(missing)}")
    with writer_lock(index_dir):
        manifest = manifest_text(corpus_dir)
        changes: dict[str, bytes | None] = dict.fromkeys(names)
        if manifest:
            for name in names:
                manifest = without_file_entry(manifest, name)
            changes[MANIFEST_NAME] = manifest.encode("utf-8")
        return _rewrite(corpus_dir, index_dir, changes, progress)


def _check_new(paths: list[Path], corpus_dir: Path) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        if path.suffix.lower() not in FORMATS:
            raise ValueError(f"{path}: unsupported format {path.suffix or '(none)'} (use {', '.join(sorted(FORMATS))})")
        if path.name == MANIFEST_NAME:
            raise ValueError(f"{path}: {MANIFEST_NAME} is the collection's manifest, not a document")
        if path.name in seen:
            raise ValueError(f"{path}: two files named {path.name} ({seen[path.name]} too); rename one")
        seen[path.name] = path
        try:
            raw_text(path)  # a scanned PDF is refused here, saying why
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        existing = corpus_dir / path.name
        if existing.exists() and existing.read_bytes() != path.read_bytes():
            raise ValueError(f"{path}: the collection already has a different file named {path.name}")


def _rewrite(corpus_dir: Path, index_dir: Path, changes: dict[str, bytes | None], progress: bool) -> Path:
    """Build the index of the corpus with `changes` (file name -> new bytes, None = removed) applied, then commit:
    apply them to the corpus and swap the index in. Called under the writer lock.

    The commit is rolled forward if it is cut short: once the staging directory holds the built index, the
    changes and a commit record, a write killed at any later moment is finished by the next writer or loader
    (finish_interrupted), so the collection is always the old one or the new one, whole."""
    from qa.build import build_default_index

    finish_interrupted(index_dir, locked=True, corpus_dir=corpus_dir)
    stores.recover(index_dir)  # debris of an earlier write that was killed before its commit
    staging = stores.staging_dir(index_dir, corpus_dir)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        corpus = staging / "corpus"
        shutil.copytree(corpus_dir, corpus, ignore=shutil.ignore_patterns("*.py", "__pycache__", ".*"))
        _apply(corpus, changes)
        target = stores.staging_target(index_dir, staging)
        if stores.shared(index_dir):
            # The database's transaction is the commit point: the record comes first and names it.
            token = uuid.uuid4().hex
            _record_commit(staging, corpus_dir, changes, token)
            with stores.tagged_write(index_dir, token):
                build_default_index(corpus, target, progress=progress, reuse_from=index_dir)
        else:
            build_default_index(corpus, target, progress=progress, reuse_from=index_dir)
            _record_commit(staging, corpus_dir, changes)
        _commit(staging, index_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return index_dir


def _record_commit(staging: Path, corpus_dir: Path, changes: dict[str, bytes | None], token: str | None = None) -> None:
    """The commit point: from here on, the write is finished even if this process dies. (With a `token`, for a
    database store: the write is finished if the database committed the version that records the token.)"""
    kept = staging / "changes"
    kept.mkdir()
    for name, data in changes.items():
        if data is not None:
            (kept / name).write_bytes(data)
    record = {"corpus_dir": str(corpus_dir.resolve()), "write": sorted(n for n, d in changes.items() if d is not None),
              "remove": sorted(n for n, d in changes.items() if d is None), "token": token}  # fmt: skip
    layout.fsync_path(kept)
    write_atomically(staging / layout.COMMIT_FILE, json.dumps(record).encode("utf-8"))


def _commit(staging: Path, index_dir: Path) -> None:
    """Apply a recorded commit: the files first, then the index (each step may be repeated)."""
    record = json.loads((staging / layout.COMMIT_FILE).read_text(encoding="utf-8"))
    changes: dict[str, bytes | None] = {n: (staging / "changes" / n).read_bytes() for n in record["write"]}
    changes |= dict.fromkeys(record["remove"])
    _apply(Path(record["corpus_dir"]), changes)
    if (staging / "index").is_dir():  # not yet swapped in (a database's build made its version current itself)
        stores.publish(staging / "index", index_dir)


def finish_interrupted(index_dir: Path, locked: bool = False, corpus_dir: Path | None = None) -> None:
    """Finish the commit of a write that was killed after its commit point (see _rewrite). Without the writer
    lock (`locked`), only if no writer holds it: a live writer finishes it first thing. A database store's
    writes are found beside their corpus directory (`corpus_dir`): its writers finish them, and so does a server
    or `qa ask` loading the collection with that corpus, so the corpus need not wait for the next write."""
    if stores.shared(index_dir):
        pending = _dead_writes(Path(corpus_dir).absolute()) if corpus_dir is not None else []
    else:
        pending = [(s, pid) for s, pid in _dead_writes(index_dir) if (s / layout.COMMIT_FILE).exists()]
    if not pending:  # the common case: no lock taken, nothing asked of a database
        return
    with contextlib.ExitStack() as stack:
        if not locked and not stack.enter_context(stores.try_writer_lock(index_dir)):
            return
        if stores.shared(index_dir):
            _finish_database_writes(index_dir, Path(corpus_dir))
            return
        for staging, pid in pending:
            log.warning("finishing the interrupted write of %s (process %d)", index_dir, pid)
            _commit(staging, index_dir)
            shutil.rmtree(staging, ignore_errors=True)


def _dead_writes(next_to: Path) -> list[tuple[Path, int]]:
    """The staging directories beside `next_to` whose writer process is gone, with its process id."""
    return [(staging, pid) for staging, pid in layout.siblings(next_to, "staging") if not layout.pid_alive(pid)]


def _finish_database_writes(url: str, corpus_dir: Path) -> None:
    """Each write to the database `url` from this corpus whose process died: its files are put in place if the
    database committed its version, else it is dropped (the database rolled it back)."""
    for staging, pid in _dead_writes(corpus_dir.absolute()):
        try:
            token = json.loads((staging / layout.COMMIT_FILE).read_text(encoding="utf-8"))["token"]
        except (OSError, ValueError, KeyError, TypeError):
            token = None  # killed before its record was complete: before its build, too
        where = stores.describe(url)  # without its password
        if token and stores.committed(url, token):
            log.warning("finishing the interrupted write of %s (process %d): its version is committed", where, pid)
            _commit(staging, url)
        else:
            log.info("dropping the interrupted write of %s (process %d): it never committed", where, pid)
        shutil.rmtree(staging, ignore_errors=True)


def _apply(corpus_dir: Path, changes: dict[str, bytes | None]) -> None:
    for name, data in changes.items():
        if data is None:
            (corpus_dir / name).unlink(missing_ok=True)
        else:
            write_atomically(corpus_dir / name, data)
    layout.fsync_path(corpus_dir)  # the renames and unlinks too survive a crash


def documents(corpus_dir: Path, index_dir: Path) -> list[dict]:
    """Each document of the collection with its works as the index holds them, and whether the index is up to
    date with it: "indexed", "changed since indexed", "not indexed yet", "removed; still indexed", or
    "skipped: <why>" for a file the build could not ingest."""
    from corpus.ingest import corpus_files

    on_disk = corpus_files(corpus_dir)
    built_from, works, skipped = _indexed(index_dir)
    on_disk.pop(MANIFEST_NAME, None)  # recorded for staleness; not a document
    built_from.pop(MANIFEST_NAME, None)
    out = []
    for name in sorted(set(on_disk) | set(built_from) | set(skipped)):
        if name in skipped:
            status = f"skipped: {skipped[name]}"
        elif name not in built_from:
            status = "not indexed yet"
        elif name not in on_disk:
            status = "removed; still indexed"
        else:
            status = "indexed" if on_disk[name] == built_from[name] else "changed since indexed"
        keys = ("id", "title", "authors", "year", "kind", "viewpoint_label")
        out.append({"file": name, "status": status, "works": [{k: w[k] for k in keys} for w in works.get(name, [])]})
    return out


def _indexed(index_dir) -> tuple[dict[str, str], dict[str, list[dict]], dict[str, str]]:
    """The corpus files an index was built from (name -> sha256), its works by file, and the files its build
    skipped (name -> why); empty without one."""
    built_from, works, skipped = stores.catalogue(index_dir)
    by_file: dict[str, list[dict]] = {}
    for w in works:
        by_file.setdefault(w["file"], []).append(w)
    return built_from, by_file, {s["file"]: s["reason"] for s in skipped}
