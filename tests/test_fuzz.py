"""API fuzzing with the Schemathesis CLI against a running `qa serve`, every check on (`--checks all`).

A bounded run (a fixed seed, a few examples per operation, a time budget) over the server's own OpenAPI
schema: responses must conform to the schema (status codes, content types, bodies), invalid requests must
be rejected and valid ones accepted, and nothing may be a server error. The two failures it found are
also pinned below as minimal requests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _api_support import built_index, running_server

from qa.schema import VISIBLE_CHAR

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 10
MAX_SECONDS = 90


@pytest.fixture(scope="module")
def server():
    with running_server(built_index()) as srv:
        yield srv


def post(url: str, body: dict) -> int:
    req = urllib.request.Request(url + "/v1/ask", json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_schemathesis_all_checks_against_the_running_server(server, tmp_path):
    exe = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    if not Path(exe).exists():
        pytest.skip("schemathesis is not installed: pip install -e '.[test]'")
    cmd = [exe, "run", f"{server.url}/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES)]
    cmd += ["--seed", "1", "--workers", "1", "--request-timeout", "60", "--max-time", str(MAX_SECONDS)]
    cmd += ["--no-color", "--report", "junit", "--report-dir", str(tmp_path)]
    env = os.environ | {"NO_COLOR": "1", "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("schemathesis_hooks.py"))}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-6000:]


def test_schema_says_what_validation_does_for_the_question(server):
    schema = json.loads(urllib.request.urlopen(server.url + "/openapi.json", timeout=10).read())
    question = schema["components"]["schemas"]["AskRequest"]["properties"]["question"]
    assert post(server.url, {"question": "", "top_k": 10}) == 422
    assert question["minLength"] == 1 and question["pattern"] == VISIBLE_CHAR  # the schema says so too


def test_a_boolean_year_is_rejected(server):
    # Found by schemathesis (ST201): pydantic's lax mode read `true` as 1.
    assert post(server.url, {"question": "What is Stalinism?", "filters": {"year_to": True}}) == 422
