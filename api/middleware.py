"""Per-request context: the X-Request-ID (echoed or made), one access-log line, a JSON 500 for crashes, the
request body's size and time limits, HEAD answered as GET, and the security headers on every response."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response
from api.logs import request_id
from api.settings import Settings

# A client-sent id is echoed only when it is short and plain, so it cannot forge log lines.
SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("api.access")
log = logging.getLogger("api.errors")

# The page loads only its own script, style sheet and API: nothing inline, nothing from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# /docs and /redoc are FastAPI's templates: Swagger UI starts from an inline script, both style inline,
# and ReDoc runs a worker from a blob: URL. Their content is our schema, not user input.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
CLIENT_GONE = 499  # in the access log only (nginx's code): the client left before it could be answered


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    docs = path in DOCS_PATHS or path.startswith("/docs/")
    return [
        (b"content-security-policy", (DOCS_CSP if docs else CSP).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]


class BodyRefused(ApiError):
    """The body is too large or too slow. The connection is closed after the answer: the rest of the body
    is never read, so the connection cannot carry another request."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, code, message, "body", headers={"Connection": "close"})

    def response(self):
        return error_response(self.status, self.code, self.message, self.field, headers=self.headers)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings | None = None):
        self.app = app
        settings = settings or Settings()
        self.max_body, self.body_timeout = settings.max_body_bytes, settings.body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = sent if SAFE_ID.fullmatch(sent) else uuid.uuid4().hex
        token = request_id.set(rid)
        status, started, t0 = 500, False, time.perf_counter()
        extra_headers = [(b"x-request-id", rid.encode()), *security_headers(scope["path"])]
        ours = {name for name, _ in extra_headers}

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                message["headers"] = headers + extra_headers
            await send(message)

        try:
            if refused := self.refuse_at_once(scope):
                raise refused
            await self.app(as_get(scope), self.limit_body(receive), send_with_id)
        except BodyRefused as exc:  # the app's ApiError handler answers these; this is for an app without it
            if not started:
                await exc.response()(scope, receive, send_with_id)
        except ClientDisconnect:
            status = CLIENT_GONE  # nothing to answer, nothing wrong on our side: the access line says it
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

    def refuse_at_once(self, scope: Scope) -> BodyRefused | None:
        """A Content-Length over the limit is refused before a byte of the body is read."""
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            return BodyRefused(413, "payload_too_large", f"request body is over {self.max_body} bytes")
        return None

    def limit_body(self, receive: Receive) -> Receive:
        """`receive`, counting the body as it streams (chunked bodies have no Content-Length) and giving it
        body_timeout seconds from now to arrive in full. Once the body is in, messages pass unchanged."""
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        received, complete = 0, False

        async def receive_limited() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                message = f"the request body did not arrive within {self.body_timeout:g} s"
                raise BodyRefused(408, "request_timeout", message) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyRefused(413, "payload_too_large", f"request body is over {self.max_body} bytes")
                complete = not message.get("more_body", False)
            return message

        return receive_limited


def as_get(scope: Scope) -> Scope:
    """HEAD is GET without the body: the app sees GET, and the server, which keeps the original scope,
    sends the headers (Content-Length included) and drops the body."""
    return dict(scope, method="GET") if scope["method"] == "HEAD" else scope
