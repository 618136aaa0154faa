"""Per-request context: the X-Request-ID (echoed or made), one access-log line, and a JSON 500 for crashes."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.logs import request_id

# A client-sent id is echoed only when it is short and plain, so it cannot forge log lines.
SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("api.access")
log = logging.getLogger("api.errors")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = sent if SAFE_ID.fullmatch(sent) else uuid.uuid4().hex
        token = request_id.set(rid)
        status, started, t0 = 500, False, time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = headers + [(b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Nothing a client sends may produce a trace: log it here, answer with the uniform body.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:
                message = f"internal error; quote request id {rid} to the operator"
                await error_response(500, "internal_error", message)(scope, receive, send_with_id)
        finally:
            ms = round((time.perf_counter() - t0) * 1000, 1)
            client = scope.get("client")
            extra = {"request_id": rid, "method": scope["method"], "path": scope["path"], "status": status}
            extra |= {"ms": ms, "client": f"{client[0]}:{client[1]}" if client else "-"}
            access_log.info("%s %s %s %.1fms", scope["method"], scope["path"], status, ms, extra=extra)
            request_id.reset(token)
