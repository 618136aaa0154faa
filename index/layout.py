"""What an index directory holds, and the helpers build and load must agree on.

An index is one directory. It is replaced as a whole by renaming sibling directories:
`<dir>.tmp-<pid>` (being built) and `<dir>.old-<pid>` (the previous index during the swap); an add or remove
of documents stages its corpus copy and index in `<dir>.staging-<pid>` (see qa/collection.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

FORMAT_VERSION = 2  # 2: the manifest checksums itself and lists every file
MANIFEST_FILE = "manifest.json"
DENSE_FILE = "dense.faiss"
BM25_DIR = "bm25"
BM25_FILES = (
    "params.index.json",
    "vocab.index.json",
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
)
PASSAGES_FILE = "passages.jsonl"
WORKS_FILE = "works.json"
COMMIT_FILE = "commit.json"  # in an add's or remove's staging directory: its changes are to be applied
RESERVED = {MANIFEST_FILE, DENSE_FILE, BM25_DIR, PASSAGES_FILE, WORKS_FILE}

STEMMER_LANGUAGE = "english"
STOPWORDS = "en"
SOFT_HYPHEN = "\u00ad"

HYPHEN = re.compile(r"[-\u2010\u2011]")  # hyphen-minus, hyphen, non-breaking hyphen (not dashes)
HYPHENATED = re.compile(rf"\b[^\W\d_]+(?:{HYPHEN.pattern}[^\W\d_]+)+\b")  # words of letters only

_local = threading.local()


def _with_closed_form(m: re.Match) -> str:
    return f"{m.group(0)} {HYPHEN.sub('', m.group(0))}"


def clean_text(text: str) -> str:
    # Soft hyphens split words invisibly ("collec\u00adtivization") and would break tokens.
    return text.replace(SOFT_HYPHEN, "")


def _stemmer():
    # PyStemmer objects are not thread-safe; the API answers queries from several threads.
    if not hasattr(_local, "stemmer"):
        import Stemmer

        _local.stemmer = Stemmer.Stemmer(STEMMER_LANGUAGE)
    return _local.stemmer


def stem(word: str) -> str:
    """The stem the lexical index uses for a lower-case word."""
    return _stemmer().stemWord(word)


def bm25_tokenize(texts: list[str], return_ids: bool, closed_compounds: bool = False):
    """The one tokenizer for both indexing and querying, so stems always match.

    For documents (`closed_compounds`), a hyphenated word also yields its closed form: "post-war" gives
    "post", "war" and "postwar", so a question that writes "postwar" matches it. (Not for questions: the
    closed form of "Tito-Stalin" occurs nowhere and would only count as a missing key term.)
    """
    import bm25s

    texts = [clean_text(t) for t in texts]
    if closed_compounds:
        texts = [HYPHENATED.sub(_with_closed_form, t) for t in texts]
    return bm25s.tokenize(
        texts,
        lower=True,
        stopwords=STOPWORDS,
        stemmer=_stemmer(),
        return_ids=return_ids,
        show_progress=False,
    )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def index_files(root: Path) -> list[Path]:
    """Every file under root except the manifest, in a stable order (symbolic links included, to be refused)."""
    return sorted(p for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and p != root / MANIFEST_FILE)


def inside(root: Path, rel: str) -> bool:
    """Whether root/rel is a regular file of the index itself, not a link leading out of it."""
    path = root / rel
    real, base = os.path.realpath(path), os.path.realpath(root)
    return not path.is_symlink() and os.path.commonpath([real, base]) == base


def fsync_path(path: Path) -> None:
    # Directories must be fsynced too, or a crash can lose the renames/new entries.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sibling(out_dir: Path, kind: str, pid: int | None = None) -> Path:
    return out_dir.with_name(f"{out_dir.name}.{kind}-{os.getpid() if pid is None else pid}")


def siblings(out_dir: Path, kind: str) -> list[tuple[Path, int]]:
    prefix = f"{out_dir.name}.{kind}-"
    found = []
    if out_dir.parent.is_dir():
        for p in out_dir.parent.iterdir():
            if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit():
                found.append((p, int(p.name[len(prefix) :])))
    return found


@contextlib.contextmanager
def _flock(path: Path, wait: bool = True, waiting: str = "") -> Iterator[bool]:
    """An exclusive lock on the file `path` for the block: yields True once held. If another process holds it,
    waits (saying `waiting` first, if given), or without `wait` yields False at once."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if waiting:
                logging.getLogger(__name__).info(waiting)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def swap_lock(out_dir: Path) -> Iterator[None]:
    """Serialise swaps and recovery between processes (held for milliseconds, not the build)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _flock(out_dir.with_name(f"{out_dir.name}.lock")):
        yield


def _writer_lock_file(index_dir: Path) -> Path:
    return index_dir.with_name(f"{index_dir.name}.write-lock")


@contextlib.contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """Held for a whole build, add or remove of the collection whose index is index_dir."""
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    with _flock(_writer_lock_file(index_dir), waiting=f"waiting for another write to {index_dir} to finish"):
        yield


@contextlib.contextmanager
def try_writer_lock(index_dir: Path) -> Iterator[bool]:
    """The writer lock if no writer holds it (yields True), else nothing (yields False); never waits."""
    path = _writer_lock_file(index_dir)
    try:
        open(path, "a").close()  # noqa: SIM115 (only: may this process write here at all?)
    except OSError as exc:  # e.g. a read-only deployment: nobody can write, so there is nothing to finish
        logging.getLogger(__name__).warning("cannot take the writer lock of %s: %s", index_dir, exc)
        yield False
        return
    with _flock(path, wait=False) as held:
        yield held


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age_key(path: Path) -> float:
    manifest = path / MANIFEST_FILE
    return (manifest if manifest.exists() else path).stat().st_mtime


def recover(out_dir: Path) -> None:
    """Undo what a crashed build left: restore a previous index caught mid-swap, drop debris."""
    with swap_lock(out_dir):
        olds = sorted((p for p, _ in siblings(out_dir, "old")), key=_age_key)
        if not out_dir.exists() and olds:
            # Crash between "out -> old" and "tmp -> out": the old index is the good one.
            os.rename(olds.pop(), out_dir)
            fsync_path(out_dir.parent)
        for p in olds:
            shutil.rmtree(p, ignore_errors=True)
        for kind in ("tmp", "staging"):  # a build's directory; an add's or remove's copy of the corpus
            for p, pid in siblings(out_dir, kind):
                # A staging directory with a commit record is a write to finish, not debris (qa/collection.py).
                if (pid == os.getpid() or not pid_alive(pid)) and not (p / COMMIT_FILE).exists():
                    shutil.rmtree(p, ignore_errors=True)


def swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace out_dir by the finished tmp dir; at every instant an index exists or is recoverable."""
    with swap_lock(out_dir):
        old = sibling(out_dir, "old")
        if out_dir.exists():
            os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            if old.exists() and not out_dir.exists():
                os.rename(old, out_dir)
            raise
        fsync_path(out_dir.parent)
    shutil.rmtree(old, ignore_errors=True)
