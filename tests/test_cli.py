"""The `qa` command line, against the real engine and index."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from importlib.metadata import version

import click
import pytest
from _api_support import CORPUS_DIR, QUESTION, REPO, built_index, get, running_server, small_corpus
from click.testing import CliRunner
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import cli
from api.settings import Settings


def run(*args: str, **env: str):
    return CliRunner(env=env or None).invoke(cli, list(args), prog_name="qa")


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, (result.output, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [[], ["ask"], ["serve"], ["corpus"], ["corpus", "stats"], ["index"], ["index", "build"], ["index", "add"], ["mcp"]]
    + [["collection", *c] for c in ([], ["path"], ["list"], ["add"], ["remove"])],
)
def test_help_everywhere(args):
    result = run(*args, "--help")
    assert result.exit_code == 0 and "Usage: qa" in result.output


def test_version_is_the_installed_distributions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    result = run("--version")
    assert result.exit_code == 0 and result.output == f"qa {version(project['name'])}\n"


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "api.cli", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "ask" in out.stdout


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question_is_a_usage_error(question):
    assert "question" in one_error_line(run("ask", question), 2)


def test_too_long_question_and_bad_top_k_are_usage_errors():
    assert "1000" in one_error_line(run("ask", "x" * 1001), 2)
    one_error_line(run("ask", "q", "--top-k", "0"), 2)


def test_missing_index_is_one_line_saying_how_to_build(tmp_path):
    line = one_error_line(run("ask", "Who was Stalin?", "--index", str(tmp_path / "none")), 1)
    assert "qa index build" in line


def half_truncated_index(tmp_path):
    """A copy of the built index whose largest file is cut in half."""
    broken = tmp_path / "index"
    shutil.copytree(built_index(), broken)
    victim = max((p for p in broken.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return broken


@pytest.mark.slow
def test_corrupt_index_is_one_line(tmp_path):
    broken = half_truncated_index(tmp_path)
    assert "qa index build" in one_error_line(run("ask", "Who was Stalin?", "--index", str(broken)), 1)


def test_index_add_missing_file_is_a_usage_error(tmp_path):
    one_error_line(run("index", "add", str(tmp_path / "nope.txt")), 2)


def test_corpus_stats():
    result = run("corpus", "stats", "--corpus", str(CORPUS_DIR))
    assert result.exit_code == 0 and "passages" in result.output


@pytest.mark.slow
def test_ask_json_is_exactly_the_api_response():
    index = str(built_index())
    result = run("ask", QUESTION, "--json", "--top-k", "5", "--index", index)
    assert result.exit_code == 0, result.stderr
    cli_json = json.loads(result.output)
    with TestClient(create_app(Settings(index_dir=built_index()))) as c:
        api_json = c.post("/v1/ask", json={"question": QUESTION, "top_k": 5}).json()
    cli_json.pop("took_ms"), api_json.pop("took_ms")
    assert cli_json == api_json


@pytest.mark.slow
def test_ask_for_a_person_shows_rank_work_highlight_holders_and_citation():
    result = run("ask", QUESTION, "--top-k", "3", "--index", str(built_index()))
    assert result.exit_code == 0, result.stderr
    out = result.output
    assert " 1. " in out and "viewpoint:" in out and "cite:" in out and "»" in out


@pytest.mark.slow
def test_ask_abstention_is_said_plainly():
    result = run("ask", "What is the boiling point of mercury in kelvin?", "--index", str(built_index()))
    assert result.exit_code == 0 and "The collection does not answer this" in result.output


@pytest.mark.slow
def test_ask_unknown_viewpoint_is_a_usage_error():
    line = one_error_line(run("ask", "q", "--viewpoint", "monarchist", "--index", str(built_index())), 2)
    assert "viewpoint" in line and "monarchist" in line


@pytest.mark.slow
def test_ask_filters_by_work_and_viewpoint():
    index = str(built_index())
    result = run("ask", QUESTION, "--json", "--work", "cpc-question-of-stalin-1963", "--index", index)
    assert result.exit_code == 0, result.stderr
    assert {p["source"]["work"] for p in json.loads(result.output)["passages"]} == {"cpc-question-of-stalin-1963"}
    result = run("ask", QUESTION, "--json", "--viewpoint", "encyclopedic", "--no-diversify", "--index", index)
    assert {p["viewpoint"]["label"] for p in json.loads(result.output)["passages"]} == {"encyclopedic"}


@pytest.mark.slow
def test_serve_builds_a_missing_index_then_a_changed_corpus_makes_it_stale(tmp_path):
    corpus, index = small_corpus(tmp_path), tmp_path / "fresh-index"
    with running_server(index, "--corpus", str(corpus)) as server:
        assert "building it" in server.log.read_text()
        status, body = get(server.url + "/v1/works")
        assert status == 200 and json.loads(body)
    text = next(corpus.glob("*.txt"))
    text.write_text(text.read_text(encoding="utf-8") + "\nA new closing sentence.\n", encoding="utf-8")
    line = one_error_line(run("ask", "Who was Stalin?", "--corpus", str(corpus), "--index", str(index)), 1)
    assert "qa index build" in line


@pytest.mark.slow
def test_index_add_a_document(tmp_path):
    corpus, index = small_corpus(tmp_path), tmp_path / "index"
    doc = tmp_path / "note_on_tito.txt"
    doc.write_text("Josip Broz Tito broke with Stalin in 1948 and led Yugoslavia on its own road.\n", encoding="utf-8")
    result = run("index", "add", str(doc), "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 0, result.stderr
    assert (corpus / doc.name).exists()
    result = run("ask", "When did Tito break with Stalin?", "--json", "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 0, result.stderr
    assert any(p["source"]["file"].endswith(doc.name) for p in json.loads(result.output)["passages"])


def test_index_add_an_unreadable_file_is_one_line(tmp_path):
    corpus = small_corpus(tmp_path)
    bad = tmp_path / "binary.txt"
    bad.write_bytes(b"\x00\xff\xfe" * 100)
    line = one_error_line(run("index", "add", str(bad), "--corpus", str(corpus), "--index", str(tmp_path / "i")), 1)
    assert "binary.txt" in line
    assert not (corpus / bad.name).exists()


@pytest.mark.slow
def test_serve_with_two_workers_and_access_log():
    with running_server(built_index(), "--workers", "2") as server:
        req = urllib.request.Request(server.url + "/healthz", headers={"X-Request-ID": "cli-77"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["x-request-id"] == "cli-77"
        assert get(server.url + "/v1/works")[0] == 200
        time.sleep(0.5)
        assert "cli-77" in server.log.read_text()


@pytest.mark.slow
def test_serve_stops_with_one_line_when_the_index_is_corrupt(tmp_path):
    broken = half_truncated_index(tmp_path)
    cmd = [sys.executable, "-m", "api.cli", "serve", "--port", "0", "--index", str(broken)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "qa index build" in last and "Traceback" not in out.stderr


def readme_commands() -> list[str]:
    """Every `qa ...` line of the README's shell examples (with its continuation lines)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.startswith("qa ")]


@pytest.mark.parametrize("line", readme_commands())
def test_readme_commands_exist_with_their_options(line):
    """The README is kept true: each command it shows exists, and takes the options it is shown with."""
    words = shlex.split(line)[1:]
    path = []
    group = cli
    while words and isinstance(group, click.Group) and words[0] in group.commands:
        group = group.commands[words[0]]
        path.append(words.pop(0))
    result = run(*path, "--help")
    assert result.exit_code == 0, line
    for option in (w.split("=")[0] for w in words if w.startswith("--")):
        assert option in result.output, f"{line}: no option {option}"
