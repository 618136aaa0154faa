"""A route class that insists on UTF-8 JSON bodies, so encoding mistakes get a clear 4xx of their own."""

from __future__ import annotations

import email.message

from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.errors import ApiError

MAX_BODY_BYTES = 64 * 1024  # a question is at most 1,000 characters; this leaves room for filters


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class StrictJSONRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()
        if not self.body_field:
            return handler

        async def route(request: Request) -> Response:
            body = await request.body()  # cached: the handler reads the same bytes
            if len(body) > MAX_BODY_BYTES:
                message = f"request body is over {MAX_BODY_BYTES} bytes"
                raise ApiError(413, "payload_too_large", message, "body")
            if body and not is_json(request.headers.get("content-type")):
                message = "send the body as Content-Type: application/json"
                raise ApiError(415, "unsupported_media_type", message, "body")
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                message = f"request body is not valid UTF-8 (byte {exc.start}): send JSON encoded as UTF-8"
                raise ApiError(400, "invalid_encoding", message, "body") from exc
            return await handler(request)

        return route
