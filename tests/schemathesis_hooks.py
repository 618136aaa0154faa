"""Schemathesis hooks for the fuzz tests (test_api_fuzz in-process, test_fuzz through the CLI's SCHEMATHESIS_HOOKS).

Two rules of the ask request cannot be stated in JSON Schema, so generated bodies that break them are dropped and
the checks that a schema-valid request is accepted (ST202) and a schema-violating one refused with a 4xx the
checks know (ST201) stay worth having for everything else:
- year_from <= year_to (the schema says it in words; a request breaking it gets 422);
- the body's size in bytes (QA_MAX_BODY_BYTES; a larger body gets 413 before it is read).
"""

from __future__ import annotations

import json

import schemathesis

from api.settings import Settings

MAX_BODY_BYTES = Settings.model_fields["max_body_bytes"].default


def years_out_of_order(body) -> bool:
    filters = body.get("filters") if isinstance(body, dict) else None
    if not isinstance(filters, dict):
        return False
    start, end = filters.get("year_from"), filters.get("year_to")
    return all(isinstance(y, int) and not isinstance(y, bool) for y in (start, end)) and start > end


def too_large(body) -> bool:
    """Bodies come as JSON values or, for the negative cases, as raw bytes or text."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if not isinstance(body, bytes | bytearray):
        try:
            body = json.dumps(body).encode()
        except (TypeError, ValueError):  # holds bytes somewhere: not JSON, sent as something else
            return False
    return len(body) > MAX_BODY_BYTES


@schemathesis.hook
def filter_body(context, body) -> bool:
    return not years_out_of_order(body) and not too_large(body)
