"""Schemathesis hooks for the fuzz tests (test_api_fuzz in-process, test_fuzz through the CLI's SCHEMATHESIS_HOOKS).

year_from <= year_to is the one rule of the ask request that JSON Schema cannot state (the schema says it in
words, and a request breaking it gets 422): generated bodies that break it are dropped, so "a schema-valid
request is accepted" (ST202) stays a check worth having for everything else.
"""

from __future__ import annotations

import schemathesis


def years_out_of_order(body) -> bool:
    filters = body.get("filters") if isinstance(body, dict) else None
    if not isinstance(filters, dict):
        return False
    start, end = filters.get("year_from"), filters.get("year_to")
    return all(isinstance(y, int) and not isinstance(y, bool) for y in (start, end)) and start > end


@schemathesis.hook
def filter_body(context, body) -> bool:
    return not years_out_of_order(body)
