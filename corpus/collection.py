"""A collection on disk: its documents and its manifest, edited without losing a comment or a file.

A user's collection lives in a data directory (see api/settings.py), not in the source tree. The first time
there is none, the bundled demo collection is copied there, so adding or removing documents never writes
into the installed package.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import tomlkit

from corpus.ingest import CORPUS_DIR, FORMATS, MANIFEST_NAME, STATED_FIELDS


def seed_demo(corpus_dir: Path) -> bool:
    """Copy the bundled demo collection to corpus_dir when it does not exist yet; True when it did."""
    if corpus_dir.exists():
        return False
    staging = Path(tempfile.mkdtemp(prefix=f".{corpus_dir.name}.seed-", dir=_made(corpus_dir.parent)))
    for path in sorted(CORPUS_DIR.iterdir()):
        if path.is_file() and (path.name == MANIFEST_NAME or path.suffix.lower() in FORMATS):
            shutil.copyfile(path, staging / path.name)
    try:
        os.rename(staging, corpus_dir)  # atomic: a half-copied demo is never taken for a collection
    except OSError:  # another process seeded it first
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part (and a crash loses neither)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def manifest_text(corpus_dir: Path) -> str:
    path = corpus_dir / MANIFEST_NAME
    return path.read_text(encoding="utf-8") if path.exists() else ""


def with_file_entry(text: str, name: str, fields: dict, viewpoint_description: str | None = None) -> str:
    """The manifest `text` with file `name` described by `fields` (keys of STATED_FIELDS; the rest of what a
    work needs is inferred from the file), replacing any entry the file had. Comments are kept."""
    doc = tomlkit.parse(text.rstrip("\n") + "\n\n" if text.strip() else "")  # a blank line before the entry
    unknown = set(fields) - set(STATED_FIELDS)
    if unknown:
        raise ValueError(f"unknown document field(s): {', '.join(sorted(unknown))}")
    files = _files_array(doc)
    _drop(files, name)
    entry = tomlkit.table()
    entry["name"] = name
    for key in STATED_FIELDS:
        if fields.get(key) not in (None, [], ""):
            entry[key] = fields[key]
    files.append(entry)
    label = fields.get("viewpoint_label")
    if label and viewpoint_description:
        doc.setdefault("viewpoints", tomlkit.table())[label] = viewpoint_description
    return tomlkit.dumps(doc)


def without_file_entry(text: str, name: str) -> str:
    doc = tomlkit.parse(text)
    if "files" in doc:
        _drop(doc["files"], name)
    return tomlkit.dumps(doc)


def _files_array(doc) -> tomlkit.items.AoT:
    if "files" not in doc:
        doc["files"] = tomlkit.aot()
    return doc["files"]


def _drop(files, name: str) -> None:
    for i in reversed(range(len(files))):
        if files[i].get("name") == name:
            del files[i]
