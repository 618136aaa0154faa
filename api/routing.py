"""A route class that insists on UTF-8 JSON bodies, so encoding mistakes get a clear 4xx of their own."""

from __future__ import annotations

import email.message

from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.errors import ApiError


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
            # Cached: the handler reads the same bytes. Its size and time are limited while it is read
            # (api.middleware: 413 over settings.max_body_bytes, 408 after settings.body_timeout_seconds).
            body = await request.body()
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
