"""The HTTP API against the real engine and a real index built once per session."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tomllib
import unicodedata
from datetime import datetime
from importlib.metadata import version

import pytest
from _api_support import CORPUS_DIR, QUESTION, REPO, built_index, is_verbatim
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api import DISTRIBUTION
from api.app import create_app
from api.logs import JsonFormatter, request_id
from api.settings import Settings
from qa.schema import VISIBLE_CHAR, AskRequest, AskResponse, ReasonCode

pytestmark = pytest.mark.slow
UNANSWERABLE = "What is the boiling point of mercury in kelvin?"


@pytest.fixture(scope="module")
def client():
    app = create_app(Settings(index_dir=built_index()))
    with TestClient(app) as c:
        assert c.get("/readyz").status_code in (200, 503)
        yield c


@pytest.fixture(scope="module")
def answer(client) -> dict:
    r = client.post("/v1/ask", json={"question": QUESTION, "top_k": 10})
    assert r.status_code == 200, r.text
    return r.json()


def error_of(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] and err["message"] and err["request_id"] == r.headers["x-request-id"]
    return err


# ---- service endpoints -----------------------------------------------------------------------------------


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post("/v1/ask", json={"question": "warm up"})  # waits for the engine
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_is_503_with_the_reason_when_the_index_cannot_load(tmp_path):
    app = create_app(Settings(index_dir=tmp_path / "missing", ready_wait_seconds=60))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        err = error_of(c.post("/v1/ask", json={"question": "anything"}), 503)
        assert err["code"] == "not_ready" and "qa index build" in err["message"]
        assert error_of(c.get("/readyz"), 503)["code"] == "not_ready"


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/healthz", headers={"X-Request-ID": "trace-42"}).headers["x-request-id"] == "trace-42"
    made = client.get("/healthz").headers["x-request-id"]
    assert len(made) == 32
    forged = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"}).headers["x-request-id"]
    assert "\n" not in forged and " " not in forged


def test_openapi_docs_are_served_from_the_package(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/ask", "/v1/info", "/v1/works", "/v1/works/{work_id}", "/v1/passages/{passage_id}"} <= set(paths)
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/") for a in assets), assets  # nothing from a CDN
        for asset in assets:
            assert client.get(asset).status_code == 200, asset


def test_info_says_what_is_serving(client):
    info = client.get("/v1/info").json()
    index = json.loads((built_index() / "manifest.json").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    collection = tomllib.loads((CORPUS_DIR / "manifest.toml").read_text())["corpus"]["name"]
    assert info["name"] == project["name"] == DISTRIBUTION and info["version"] == version(DISTRIBUTION)
    assert info["collection"] == collection and info["model"] == index["model"]["name"]
    assert info["passage_count"] == index["passage_count"] > 0
    assert info["work_count"] == len(client.get("/v1/works").json()) >= 5
    built = datetime.fromisoformat(info["index_built"])
    assert built.tzinfo is not None and (datetime.now(built.tzinfo) - built).days < 1


def test_app_version_is_the_installed_one(client):
    assert client.get("/openapi.json").json()["info"]["version"] == version(DISTRIBUTION)


def test_every_filter_value_the_schema_lists_fits_its_bounds(client):
    client.post("/v1/ask", json={"question": "warm up"})  # waits for the engine: the values come from it
    filters = client.get("/openapi.json").json()["components"]["schemas"]["Filters"]["properties"]
    for name in ("work", "author", "kind", "viewpoint", "holder"):
        items = next(o["items"] for o in filters[name]["anyOf"] if o.get("type") == "array")
        assert items["enum"], name
        assert all(items["minLength"] <= len(v) <= items["maxLength"] for v in items["enum"]), name


RESPONSE_MODELS = [
    "AskResponse", "PassageOut", "Source", "Highlight", "SpanOut", "Attribution", "ViewpointOut", "Citation",
    "NoteOut", "ViewpointGroup", "WorkOut", "PassageContext", "InfoOut", "ErrorBody", "ErrorDetail",
]  # fmt: skip


def test_every_response_field_is_described(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    undescribed = [
        f"{model}.{name}"
        for model in RESPONSE_MODELS
        for name, prop in schemas[model]["properties"].items()
        if not prop.get("description")
    ]
    assert not undescribed
    reason_code = schemas["AskResponse"]["properties"]["reason_code"]
    assert schemas[reason_code["$ref"].rsplit("/", 1)[-1]]["enum"] == [c.value for c in ReasonCode]


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for name in ("app.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_cors_preflight_follows_settings(tmp_path):
    app = create_app(Settings(index_dir=tmp_path, cors_origins=["https://library.example"]))
    c = TestClient(app)  # not started: CORS needs no engine
    headers = {
        "Origin": "https://library.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    r = c.options("/v1/ask", headers=headers)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://library.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"].lower()
    r = c.options("/v1/ask", headers=headers | {"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in r.headers
    simple = c.get("/healthz", headers={"Origin": "https://library.example"})
    assert simple.headers["access-control-allow-origin"] == "https://library.example"


def test_no_cors_headers_unless_configured(tmp_path):
    c = TestClient(create_app(Settings(index_dir=tmp_path, cors_origins=[])))
    r = c.options("/v1/ask", headers={"Origin": "https://library.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_unexpected_errors_are_a_json_500_without_trace():
    app = create_app(Settings(index_dir=built_index()))

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    err = error_of(r, 500)
    assert err["code"] == "internal_error" and "secret" not in r.text and "Traceback" not in r.text


def test_json_log_lines_carry_the_request_id():
    token = request_id.set("rid-7")
    try:
        record = logging.LogRecord("api.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["request_id"] == "rid-7" and line["message"] == "GET /x" and line["level"] == "info"


# ---- ask -----------------------------------------------------------------------------------------


def test_ask_returns_cited_verbatim_passages_grouped_by_viewpoint(answer):
    resp = AskResponse.model_validate(answer)
    assert resp.answered and resp.passages and len(resp.passages) <= 10
    assert [p.rank for p in resp.passages] == list(range(1, len(resp.passages) + 1))
    ids = {p.id for p in resp.passages}
    grouped = [pid for g in resp.viewpoints for pid in g.passages]
    assert set(grouped) <= ids and len(grouped) == len(set(grouped))
    for p in answer["passages"]:
        assert is_verbatim(p), p["id"]
        assert p["citation"]["text"] and p["citation"]["csl"]["title"] == p["source"]["title"]
        assert p["source"]["file"] in p["citation"]["text"]
        assert p["viewpoint"]["label"]


def test_ask_top_k_and_work_filter(client, answer):
    work = answer["passages"][0]["source"]["work"]
    r = client.post("/v1/ask", json={"question": QUESTION, "top_k": 3, "filters": {"work": [work]}})
    assert r.status_code == 200, r.text
    passages = r.json()["passages"]
    assert 1 <= len(passages) <= 3 and {p["source"]["work"] for p in passages} == {work}


def test_ask_abstains_with_the_nearest_passages(client, answer):
    r = client.post("/v1/ask", json={"question": UNANSWERABLE})
    body = r.json()
    assert r.status_code == 200 and body["answered"] is False and body["reason"]
    assert body["reason_code"] in {c.value for c in ReasonCode} - {"answered"}
    assert body["passages"] and not any(p["supports_answer"] for p in body["passages"])
    assert answer["reason_code"] == "answered"


def test_filters_that_leave_no_passage_say_so_by_code(client):
    r = client.post("/v1/ask", json={"question": QUESTION, "filters": {"year_from": 3000}})
    body = r.json()
    assert r.status_code == 200 and body["reason_code"] == "no_passages" and not body["passages"]


def meaningless(c: str) -> bool:
    """What the question must not consist of alone: whitespace to Python or to ECMA-262 (U+FEFF), controls."""
    return c.isspace() or c == "\ufeff" or unicodedata.category(c) == "Cc"


BMP = [chr(i) for i in range(0x10000) if not 0xD800 <= i <= 0xDFFF]


def test_question_pattern_is_what_the_validator_accepts():
    """Python's re, pydantic's Rust regex (the schema pattern) and the validator agree on every character."""
    pattern = re.compile(VISIBLE_CHAR)
    assert [c for c in map(chr, range(0x110000)) if not pattern.search(c)] == [c for c in BMP if meaningless(c)]
    for c in BMP:
        try:
            AskRequest(question=c)
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted is not meaningless(c), hex(ord(c))


@pytest.mark.skipif(not shutil.which("node"), reason="node (an ECMA-262 engine) is not installed")
def test_question_pattern_means_the_same_in_ecma262():
    """JSON Schema patterns are ECMA-262 regexes: clients read the published pattern with node's engine."""
    script = (
        "const p = process.argv[1]; const out = {};"
        "for (const flags of ['', 'u']) { const re = new RegExp(p, flags); const bad = [];"
        "  for (let i = 0; i < 0x10000; i++) { if (i >= 0xd800 && i <= 0xdfff) continue;"
        "    if (!re.test(String.fromCharCode(i))) bad.push(i); }"
        "  out[flags || 'plain'] = bad; }"
        "console.log(JSON.stringify(out));"
    )
    run = subprocess.run(["node", "-e", script, VISIBLE_CHAR], capture_output=True, text=True, timeout=60, check=True)
    expected = [ord(c) for c in BMP if meaningless(c)]
    assert json.loads(run.stdout) == {"plain": expected, "u": expected}


BAD_BODIES = [
    pytest.param({"question": ""}, "question", id="empty"),
    pytest.param({"question": "   \n\t "}, "question", id="whitespace"),
    pytest.param({"question": "\u001e"}, "question", id="record-separator"),
    pytest.param({"question": "\ufeff\u0085\u00a0\u3000"}, "question", id="unicode-blanks"),
    pytest.param({"question": "\u0000\u0007"}, "question", id="controls"),
    pytest.param({"question": "x" * 1001}, "question", id="too-long"),
    pytest.param({"question": 42}, "question", id="not-a-string"),
    pytest.param({"question": ["a"]}, "question", id="list"),
    pytest.param({"question": None}, "question", id="null"),
    pytest.param({}, "question", id="missing"),
    pytest.param({"question": "q", "top_k": 0}, "top_k", id="top_k-0"),
    pytest.param({"question": "q", "top_k": 51}, "top_k", id="top_k-51"),
    pytest.param({"question": "q", "top_k": "ten"}, "top_k", id="top_k-text"),
    pytest.param({"question": "q", "colour": "red"}, "colour", id="unknown-field"),
    pytest.param({"question": "q", "filters": {"viewpoint": "x"}}, "filters.viewpoint", id="filter-not-list"),
    pytest.param({"question": "q", "filters": {"shelf": ["x"]}}, "filters.shelf", id="unknown-filter"),
    pytest.param({"question": "q", "filters": {"year_from": 2000, "year_to": 1900}}, "filters.year_to", id="years"),
    pytest.param({"question": "q", "filters": {"work": [""]}}, "filters.work[0]", id="empty-value"),
    pytest.param({"question": "q", "filters": {"kind": ["k" * 201]}}, "filters.kind[0]", id="long-value"),
    pytest.param({"question": "q", "filters": {"author": ["a"] * 101}}, "filters.author", id="many-values"),
]


@pytest.mark.parametrize("body, field", BAD_BODIES)
def test_bad_ask_bodies_name_the_field(client, body, field):
    err = error_of(client.post("/v1/ask", json=body), 422)
    assert err["field"] == field and field.split(".")[-1] in err["message"]


@pytest.mark.parametrize(
    "field, value",
    [("viewpoint", "monarchist"), ("work", "no-such-work"), ("kind", "sonnet"), ("author", "Nobody")],
)
def test_unknown_filter_values_are_422_naming_the_filter(client, field, value):
    err = error_of(client.post("/v1/ask", json={"question": "q", "filters": {field: [value]}}), 422)
    assert err["code"] == "unknown_filter_value" and err["field"] == f"filters.{field}" and value in err["message"]


@pytest.mark.parametrize(
    "content, ctype, status, code",
    [
        (b'{"question": "x"', "application/json", 422, "invalid_json"),
        (b"not json at all", "application/json", 422, "invalid_json"),
        (b'{"question": "caf\xe9"}', "application/json", 400, "invalid_encoding"),
        ('{"question": "x"}'.encode("utf-16"), "application/json", 400, "invalid_encoding"),
        (b"", "application/json", 422, "invalid_body"),
        (b"[1, 2]", "application/json", 422, "invalid_body"),
        (b'"just a string"', "application/json", 422, "invalid_body"),
        (b'{"question": "x"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"question": "' + b"x" * 70000 + b'"}', "application/json", 413, "payload_too_large"),
    ],
    ids=["truncated", "garbage", "latin-1", "utf-16", "empty", "array", "string", "text-plain", "huge"],
)
def test_broken_bodies_get_a_clear_4xx(client, content, ctype, status, code):
    err = error_of(client.post("/v1/ask", content=content, headers={"Content-Type": ctype}), status)
    assert err["code"] == code and err["field"] == "body"


def test_wrong_method_and_unknown_path(client):
    assert error_of(client.get("/v1/ask"), 405)["code"] == "method_not_allowed"
    assert error_of(client.get("/v2/nothing"), 404)["code"] == "not_found"


# ---- works and passages --------------------------------------------------------------------------


def test_works_list_every_work_with_provenance(client):
    works = client.get("/v1/works").json()
    assert len(works) >= 5
    for w in works:
        assert w["title"] and w["origin"] and w["kind"] and w["viewpoint"] and w["viewpoint_label"]
    one = client.get(f"/v1/works/{works[0]['id']}")
    assert one.status_code == 200 and one.json() == works[0]


def test_unknown_work_is_404(client):
    err = error_of(client.get("/v1/works/no-such-work"), 404)
    assert err["field"] == "work_id" and "no-such-work" in err["message"]


def test_passage_in_context(client, answer):
    pid = answer["passages"][0]["id"]
    r = client.get(f"/v1/passages/{pid}", params={"context": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["passage"]["id"] == pid and body["work"]["id"] == answer["passages"][0]["source"]["work"]
    assert len(body["before"]) <= 2 and len(body["after"]) <= 2 and body["before"] + body["after"]
    for p in body["before"] + body["after"]:
        assert p["id"] != pid


def test_unknown_passage_is_404_and_context_is_bounded(client, answer):
    assert error_of(client.get("/v1/passages/nope"), 404)["field"] == "passage_id"
    pid = answer["passages"][0]["id"]
    assert error_of(client.get(f"/v1/passages/{pid}", params={"context": 99}), 422)["field"] == "context"
    assert error_of(client.get(f"/v1/passages/{pid}", params={"context": "x"}), 422)["field"] == "context"


ODD_BODIES = [
    b'{"question": "q", "top_k": NaN}',
    b'{"question": "q", "top_k": 1e999}',
    b'{"question": "q", "top_k": 10.5}',
    b'{"question": "q", "top_k": true}',
    b'{"question": "q", "diversify": "maybe"}',
    b'{"question": "q", "filters": null}',
    b'{"question": "q", "filters": []}',
    b'{"question": "q", "filters": {"year_from": "last year"}}',
    b'{"question": "q", "filters": {"year_from": 2000, "year_to": 1900}}',
    b'{"question": "q", "filters": {"work": [null]}}',
    b'{"question": "q", "filters": {"work": []}}',
    b'{"question": {"nested": {"deeper": [1, 2, 3]}}}',
    b'{"question": "\\u0000\\u0001 control characters"}',
    b'{"question": "\\ud800 lone surrogate"}',
    '{"question": "Сталин и коллективизация? 斯大林"}'.encode(),
    b'{"question": "q", "question": "duplicate key"}',
    b"\xef\xbb\xbf" + b'{"question": "utf-8 with a byte order mark"}',
    b"[" * 5000 + b"]" * 5000,
    b'{"question": "' + b"\\n" * 900 + b'"}',
    b"null",
    b"0",
]


@pytest.mark.parametrize("content", ODD_BODIES, ids=range(len(ODD_BODIES)))
def test_nothing_a_client_sends_is_a_500(client, content):
    r = client.post("/v1/ask", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        error_of(r, r.status_code)
    else:
        AskResponse.model_validate(r.json())
