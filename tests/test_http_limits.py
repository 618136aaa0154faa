"""HTTP-layer limits of a real `qa serve`, probed with raw sockets: body size and time, head size and time,
idle connections, clients that leave, HEAD, security headers, and the JSON log all of that leaves.

One server for the module, started on a small corpus with no index (so it builds one, in JSON log mode, with
an empty ONNX cache so the int8 export runs) and with short timeouts.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import time
from collections.abc import Iterable, Iterator

import pytest
from _api_support import running_server, small_corpus

pytestmark = pytest.mark.slow

BODY_TIMEOUT, HEAD_TIMEOUT, KEEP_ALIVE = 1.0, 2.0, 1.0
MAX_GROWTH_KB = 5 * 1024  # "a few MB": what one read buffer and allocator noise may add
MB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    env = {
        "QA_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "QA_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
        "QA_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE),
        "QA_LOG_FORMAT": "json",
        "QA_CACHE_DIR": str(root / "cache"),  # empty: the build exports the int8 encoder, as a first build does
        "HF_HUB_OFFLINE": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with running_server(root / "index", "--corpus", str(small_corpus(root))) as srv:
            yield srv


def connect(srv) -> socket.socket:
    host, port = srv.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def push(sock: socket.socket, pieces: Iterable[bytes]) -> int:
    """Send pieces until the server answers or hangs up; returns how many bytes went."""
    sent = 0
    for piece in pieces:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(piece)
        except OSError:  # reset, broken pipe, or the server stopped reading
            break
        sent += len(piece)
    return sent


def response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One response from the socket: (status, headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (reading and dropping any answer), or None."""
    t0 = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - t0


def post_head(length: str = "", chunked: bool = False) -> bytes:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    return f"POST /v1/ask HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"%x\r\n" % size + b"x" * size + b"\r\n"


# --- body ------------------------------------------------------------------------------------------------


def test_a_200_mb_content_length_gets_413_at_once_and_the_server_does_not_grow(server):
    before = rss_kb(server.pid)
    with connect(server) as s:
        t0 = time.monotonic()
        s.sendall(post_head(str(200 * MB)))
        sent = push(s, (b"x" * (64 * 1024) for _ in range(200 * 16)))
        status, headers, body = response(s)
        took = time.monotonic() - t0
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert headers["connection"] == "close" and took < 2, (took, sent)
    assert sent < 100 * MB  # it did not wait for the body
    assert rss_kb(server.pid) - before < MAX_GROWTH_KB


def test_a_chunked_body_is_refused_at_the_limit_as_it_streams(server):
    before = rss_kb(server.pid)
    with connect(server) as s:
        s.sendall(post_head(chunked=True))
        sent = push(s, chunks(200 * MB))
        status, _, body = response(s)
    assert status == 413 and json.loads(body)["error"]["field"] == "body"
    assert sent < 100 * MB
    assert rss_kb(server.pid) - before < MAX_GROWTH_KB


def test_a_body_that_never_arrives_gets_408_after_the_timeout(server):
    with connect(server) as s:
        t0 = time.monotonic()
        s.sendall(post_head("1000") + b'{"question": ')  # promises 1,000 bytes, sends 13
        status, headers, body = response(s)
        took = time.monotonic() - t0
        assert closed_within(s, 2) is not None
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert BODY_TIMEOUT * 0.9 < took < BODY_TIMEOUT + 2


def test_a_client_that_leaves_mid_body_is_logged_without_a_trace(server):
    with connect(server) as s:
        s.sendall(post_head("1000") + b'{"question": "Who')
        time.sleep(0.3)
    time.sleep(0.5)
    records = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    gone = [r for r in records if r.get("path") == "/v1/ask" and r.get("status") == 499]
    assert gone, records[-5:]
    assert not [r for r in records if r.get("status") == 500 or r.get("exc") or r["level"] == "error"]


# --- head and idle connections ---------------------------------------------------------------------------


def test_100_mb_of_headers_get_431_and_the_server_does_not_grow(server):
    before = rss_kb(server.pid)
    line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    with connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        sent = push(s, (line * 64 for _ in range(100 * MB // (len(line) * 64))))
        status, _, body = response(s)
    assert status == 431 and json.loads(body)["error"]["code"] == "request_headers_too_large"
    assert sent < 100 * MB
    assert rss_kb(server.pid) - before < MAX_GROWTH_KB


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as s:
        took = closed_within(s, HEAD_TIMEOUT + 3)
    assert took is not None and took > HEAD_TIMEOUT * 0.9


def test_headers_sent_too_slowly_get_408(server):
    with connect(server) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(4):  # a byte every half second never completes the head
            time.sleep(0.5)
            s.sendall(b"X")
        status, _, _ = response(s, timeout=HEAD_TIMEOUT + 3)
        took = time.monotonic() - t0
    assert status == 408 and HEAD_TIMEOUT * 0.9 < took < HEAD_TIMEOUT + 2


def test_an_idle_keep_alive_connection_is_closed(server):
    with connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert response(s)[0] == 200
        took = closed_within(s, KEEP_ALIVE + 3)
    assert took is not None and took < KEEP_ALIVE + 1


# --- HEAD and headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/", "/v1/works"])
def test_head_answers_like_get_without_a_body(server, path):
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
    conn.request("GET", path)
    got = conn.getresponse()
    body = got.read()
    conn.request("HEAD", path)
    head = conn.getresponse()
    assert head.status == 200 and head.read() == b""
    assert head.getheader("content-length") == str(len(body))
    conn.request("GET", "/healthz")  # same connection: a stray body after HEAD would garble this answer
    assert json.loads(conn.getresponse().read()) == {"status": "ok"}
    conn.close()


@pytest.mark.parametrize("path", ["/", "/healthz", "/v1/works", "/static/app.js", "/nowhere"])
def test_security_headers(server, path):
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
    conn.request("GET", path)
    got = conn.getresponse()
    got.read()
    csp = got.getheader("content-security-policy", "")
    assert "default-src 'self'" in csp and "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert got.getheader("x-content-type-options") == "nosniff"
    assert got.getheader("referrer-policy") == "no-referrer"


def test_the_page_needs_nothing_the_policy_forbids(server):
    """The page under script-src 'self', style-src 'self': no inline script, style or handler, nothing from
    another origin (a browser would refuse it)."""
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
    conn.request("GET", "/")
    html = conn.getresponse().read().decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [] and "<style" not in html
    assert not re.search(r"\s(style|on[a-z]+)=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for asset in re.findall(r"(?:src|href)=\"(static/[^\"]+)\"", html):
        conn.request("GET", "/" + asset)
        got = conn.getresponse()
        got.read()
        assert got.status == 200
    conn.close()


def test_docs_get_a_policy_that_lets_swagger_run(server):
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
    conn.request("GET", "/docs")
    got = conn.getresponse()
    got.read()
    assert got.status == 200 and "script-src 'self' 'unsafe-inline'" in got.getheader("content-security-policy")


# --- the log all of the above left: last -----------------------------------------------------------------

PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar


def test_the_server_log_is_json_lines_without_library_noise(server):
    time.sleep(0.5)
    text = server.log.read_bytes().decode()  # not read_text(): it would turn a bar's carriage returns into lines
    assert "Quantization parameters" not in text and "Ignore MatMul" not in text
    records = []
    for line in text.split("\n")[:-1]:
        parts = [p for p in line.split("\r") if p.strip() and not PROGRESS.search(p)]
        assert parts or "\r" in line, f"a blank line in the log: {line!r}"
        records += [json.loads(p) for p in parts]  # fails on any line that is not JSON
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
    messages = [r["message"] for r in records]
    assert any("building it" in m for m in messages) and any("exported" in m for m in messages)
    assert not [r for r in records if r["logger"] in ("root", "bm25s") or r["level"] == "debug"]
