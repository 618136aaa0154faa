"""Property-based requests from the OpenAPI schema (Schemathesis): nothing a client sends is a 5xx, every
response matches the published schema, a request the schema calls valid is accepted and one it calls
invalid is refused."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[test]'")
import schemathesis_hooks  # noqa: E402, F401  (drops bodies with years out of order)
from _api_support import built_index  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Imported at collection: from_asgi imports it lazily, and pytest's assertion rewriting then compiled it deep inside
# the fixture, where CPython 3.11.7 once failed with "AST constructor recursion depth mismatch".
from schemathesis.specs.openapi import schemas as _openapi_schemas  # noqa: E402, F401

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_schema():
    app = create_app(Settings(index_dir=built_index()))
    with TestClient(app) as c:  # runs the lifespan: the engine loads once, into app.state
        assert c.post("/v1/ask", json={"question": "warm up"}).status_code == 200
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_requests_get_what_the_schema_promises(case):
    response = case.call_and_validate()
    if response.status_code >= 400 and case.path != "/healthz":
        body = response.json()
        assert set(body) == {"error"} and body["error"]["message"], body
