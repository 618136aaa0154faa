"""Shared by test_api, test_cli and test_web: one real index per test session, and a real running server.

The index is built once per process (functools.cache) into a temporary directory removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import corpus

CORPUS_DIR = Path(corpus.__file__).resolve().parent
REPO = CORPUS_DIR.parent
WORD = re.compile(r"\w+")
QUESTION = "What did the Communist Party of China say about Stalin's mistakes?"


@functools.cache
def built_index() -> Path:
    from qa.build import build_default_index

    root = Path(tempfile.mkdtemp(prefix="qa-test-index-"))
    atexit.register(shutil.rmtree, root, True)
    build_default_index(CORPUS_DIR, root / "index", progress=False)
    return root / "index"


def small_corpus(root: Path) -> Path:
    """A copy of the corpus with only its shortest file (and the manifest): quick to index."""
    small = min((p for p in CORPUS_DIR.glob("*.txt")), key=lambda p: p.stat().st_size)
    out = root / "corpus"
    out.mkdir(parents=True)
    for p in (CORPUS_DIR / "manifest.toml", small):
        shutil.copy(p, out / p.name)
    return out


@functools.cache
def raw(file: str) -> str:
    return (CORPUS_DIR / Path(file).name).read_text(encoding="utf-8")


def is_verbatim(passage: dict) -> bool:
    """Every word of the passage text appears, in order, in the raw span it cites."""
    src = passage["source"]
    raw_words = iter(w.lower() for w in WORD.findall(raw(src["file"])[src["start"] : src["end"]]))
    return all(any(w == r for r in raw_words) for w in (w.lower() for w in WORD.findall(passage["text"])))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def running_server(index_dir: Path, *args: str, ready_seconds: float = 600):
    """`qa serve` on a free port (the same entry point as the console script).

    Yields an object with `url` (base URL), `log` (path of the server's combined output) and `pid`.
    """
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="qa-serve-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--index", str(index_dir), *args]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + ready_seconds
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"qa serve exited with {proc.returncode}:\n{Path(log.name).read_text()[-3000:]}")
            try:
                if get(url + "/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"qa serve not ready in {ready_seconds}s:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.3)
        yield SimpleNamespace(url=url, log=Path(log.name), pid=proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        os.unlink(log.name)
