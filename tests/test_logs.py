"""`qa index build` prints one line per event: its progress bars and our own log lines, no library chatter.

(The JSON log of `qa serve` is checked at the end of test_http_limits.py, on a server that built its index.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from _api_support import REPO, small_corpus

pytestmark = pytest.mark.slow

PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar
NOISE = ("Quantization parameters", "Ignore MatMul", "Building index from IDs", "Loading SentenceTransformer")


def event_lines(raw: bytes) -> list[str]:
    """The lines of the output that are not progress bars; a blank line fails the test. Read as bytes: a
    bar redraws itself after a carriage return, which text mode would turn into line breaks."""
    out, text = [], raw.decode()
    for line in text.split("\n")[:-1]:
        parts = [p for p in line.split("\r") if p.strip()]
        assert parts, f"a blank line: {text[:2000]!r}"
        out += [p for p in parts if not PROGRESS.search(p)]
    return out


def test_index_build_prints_no_library_noise_and_no_blank_lines(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "QA_CACHE_DIR": str(tmp_path / "cache"), "QA_LOG_FORMAT": "plain"}
    # An empty ONNX cache: the int8 export, where the quantizer's lines came from, runs.
    cmd = [sys.executable, "-m", "api.cli", "index", "build", "--corpus", str(small_corpus(tmp_path))]
    cmd += ["--index", str(tmp_path / "index")]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:].decode()
    lines = event_lines(out.stderr) + event_lines(out.stdout)
    assert not [line for line in lines if any(n in line for n in NOISE)], lines
    assert any("INFO index.encoder" in line and "exported" in line for line in lines), lines
    assert any("INFO index.build" in line and "built index" in line for line in lines), lines
    assert out.stdout.decode().strip() == f"index built at {tmp_path / 'index'}"
    assert len(lines) < 10, lines
