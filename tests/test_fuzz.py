"""API fuzzing with the Schemathesis CLI against a running `qa serve`, every check on (`--checks all`).

A bounded run (a fixed seed and a few examples per operation) over the server's own OpenAPI schema:
responses must conform to the schema (status codes, content types, bodies), invalid requests must be
rejected and valid ones accepted, and nothing may be a server error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _api_support import built_index, running_server

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25


def schemathesis_cli() -> list[str]:
    exe = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    if not Path(exe).exists():
        pytest.skip("schemathesis is not installed: pip install -e '.[test]'")
    return [exe]


def test_schemathesis_all_checks_against_the_running_server(tmp_path):
    cmd = schemathesis_cli()
    with running_server(built_index()) as srv:
        cmd += ["run", f"{srv.url}/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES)]
        cmd += ["--seed", "1", "--workers", "1", "--request-timeout", "60", "--max-time", "300", "--no-color"]
        cmd += ["--report", "junit", "--report-dir", str(tmp_path)]
        env = os.environ | {"NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    summary = out.stdout[-6000:]
    assert out.returncode == 0, summary
    assert "No issues found" in out.stdout or " passed" in out.stdout, summary
