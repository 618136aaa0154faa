"""`qa mcp` through the MCP SDK's own client, over stdio and streamable HTTP: one real server per transport
(module-scoped) on a real index, whose tools must answer exactly as the engine and the HTTP API do."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from _api_support import CORPUS_DIR, QUESTION, REPO, built_index, free_port, is_verbatim
from anyio.from_thread import start_blocking_portal
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from api.models import PassageContext, WorkOut
from qa.engine import Engine
from qa.schema import AskRequest

pytestmark = pytest.mark.slow
QA_MCP = ["-m", "api.cli", "mcp"]
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
READY_SECONDS = 300


class Connection:
    """A ClientSession held open in a background event loop, so plain test functions can share one per server.
    `stray` collects what the client could not read as protocol, such as stdout lines that are not JSON-RPC."""

    def __init__(self, portal, log):
        self.portal, self.log, self.session, self.stray = portal, log, None, []

    async def on_message(self, message) -> None:
        if isinstance(message, Exception):
            self.stray.append(message)

    def tools(self) -> dict:
        return {t.name: t for t in self.portal.call(self.session.list_tools).tools}

    def call(self, tool: str, **arguments):
        return self.portal.call(self.session.call_tool, tool, arguments)

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]


@contextlib.contextmanager
def connected(transport: str, *args: str):
    """An initialized session with `qa mcp ARGS`: over stdio the client starts the server, over HTTP we do."""
    with contextlib.ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        conn = Connection(portal, stack.enter_context(tempfile.TemporaryFile("w+")))
        if transport == "stdio":
            server = StdioServerParameters(command=sys.executable, args=[*QA_MCP, *args], env=ENV, cwd=str(REPO))
            streams = stdio_client(server, errlog=conn.log)
        else:
            streams = streamable_http_client(stack.enter_context(http_server(conn.log, *args)))
        read, write = stack.enter_context(portal.wrap_async_context_manager(streams))
        session = ClientSession(read, write, message_handler=conn.on_message)
        conn.session = stack.enter_context(portal.wrap_async_context_manager(session))
        try:
            portal.call(conn.session.initialize)
        except Exception as exc:
            raise RuntimeError(f"qa mcp over {transport} did not start:\n{conn.log_tail()}") from exc
        yield conn


@contextlib.contextmanager
def http_server(log, *args: str):
    """`qa mcp --transport http` on a free port; ready once it listens (it loads the engine first). Its whole
    process group is killed at the end, whatever happened."""
    port = free_port()
    cmd = [sys.executable, *QA_MCP, "--transport", "http", "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"qa mcp --transport http not ready (exit {proc.poll()}):\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        kill_group(proc)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module", params=["stdio", "http"])
def qa(request):
    with connected(request.param, "--index", str(built_index())) as conn:
        yield conn


@pytest.fixture(scope="module")
def engine():
    return Engine.load(built_index(), CORPUS_DIR)


def result_of(result, key: str | None = None) -> dict:
    """The structured content of a successful call, checked against its one text block: the same JSON (or,
    for a list, the same as the structured content's `key`)."""
    assert not result.is_error, result.content
    assert len(result.content) == 1
    text = json.loads(result.content[0].text)
    assert text == (result.structured_content[key] if key else result.structured_content)
    return result.structured_content


def test_three_read_only_tools_with_described_arguments(qa, engine):
    tools = qa.tools()
    assert set(tools) == {"ask", "get_passage", "list_works"}
    for t in tools.values():
        assert t.description and t.output_schema and t.annotations.read_only_hint
    ask = tools["ask"].input_schema
    assert ask["required"] == ["question"]
    assert all(p.get("description") for p in ask["properties"].values())
    viewpoint = ask["$defs"]["Filters"]["properties"]["viewpoint"]["anyOf"][0]["items"]["enum"]
    assert viewpoint == sorted(engine.filter_values["viewpoint"])
    passage = tools["get_passage"].input_schema["properties"]
    assert passage["context"]["minimum"] == 0 and passage["context"]["maximum"] == 10
    assert qa.stray == []


def test_ask_gives_the_engines_answer_in_verbatim_passages(qa, engine):
    args = {"question": QUESTION, "top_k": 5, "filters": {"year_from": 1900}, "diversify": True}
    got = result_of(qa.call("ask", **args))
    expected = engine.ask(AskRequest.model_validate(args)).model_dump(mode="json")
    assert got.pop("took_ms") >= 0
    expected.pop("took_ms")
    assert got == expected
    assert got["answered"] and got["reason"] and got["viewpoints"] and 0 < len(got["passages"]) <= 5
    for p in got["passages"]:
        assert is_verbatim(p), p["id"]
        assert p["citation"]["text"] and p["viewpoint"]["label"]


def test_filters_sent_as_a_json_string_are_read_as_filters(qa, engine):
    """Some chatbots send object arguments as JSON text; the SDK parses it before the API model reads it."""
    label = sorted(engine.filter_values["viewpoint"])[0]
    got = result_of(qa.call("ask", question=QUESTION, top_k=3, filters=json.dumps({"viewpoint": [label]})))
    assert got["passages"] and {p["viewpoint"]["label"] for p in got["passages"]} == {label}


def test_get_passage_is_the_passage_in_context(qa, engine):
    pid = engine.ask(AskRequest(question=QUESTION, top_k=1)).passages[0].id
    got = result_of(qa.call("get_passage", passage_id=pid, context=2))
    assert got == PassageContext.of(engine.passage(pid, context=2), engine).model_dump(mode="json")
    assert got["passage"]["id"] == pid and got["work"]["id"] == got["passage"]["source"]["work"]


def test_list_works_is_every_work(qa, engine):
    got = result_of(qa.call("list_works"), key="result")
    assert got == {"result": [WorkOut.of(w).model_dump(mode="json") for w in engine.works()]}


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("ask", {"question": "   "}, "question"),
        ("ask", {}, "question"),
        ("ask", {"question": "Who was Stalin?", "top_k": 51}, "top_k"),
        ("ask", {"question": "Who was Stalin?", "filters": {"viewpoint": ["no such viewpoint"]}}, "filters.viewpoint"),
        ("ask", {"question": "Who was Stalin?", "filters": {"colour": ["red"]}}, "filters.colour"),
        ("get_passage", {"passage_id": "no-such-passage"}, "passage_id"),
        ("get_passage", {"passage_id": "no-such-passage", "context": 11}, "context"),
    ],
)
def test_bad_arguments_are_a_one_line_tool_error_naming_the_field(qa, tool, args, field):
    result = qa.call(tool, **args)
    assert result.is_error and len(result.content) == 1
    text = result.content[0].text
    assert field in text and "\n" not in text and "Traceback" not in text, text


def test_what_loading_prints_goes_to_stderr_until_the_stdio_transport_takes_stdout():
    """Building the index prints progress, from us, libraries and a child process: over stdio none of it may
    reach the protocol stream. (The stdio server above checks the real start: `stray` stays empty.)"""
    out = subprocess.run([sys.executable, "-c", PRINTS], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout == "stdout again\n"
    assert all(line in out.stderr for line in ("from python", "from the fd", "from a child"))


PRINTS = """
import os, subprocess, sys
from api.mcp_server import stdout_to_stderr
with stdout_to_stderr():
    print("from python")
    os.write(1, b"from the fd\\n")
    subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
print("stdout again")
"""
