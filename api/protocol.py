"""uvicorn's httptools protocol with the limits it lacks on the request head: its size, and the time it may take.

uvicorn 0.54 with httptools 0.9 has neither (its h11 protocol has a size limit, h11_max_incomplete_event_size,
but h11 costs more CPU per request). Measured before this class: a request with 100 MB of headers was read
whole and answered, and grew the server by 117 MB; a connection that sends nothing, or one header byte a
minute, was kept open for ever. The body's limits are in api.middleware, where the app reads it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.settings import Settings


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int
    timeout: float

    @classmethod
    def of(cls, s: Settings) -> HeadLimits:
        return cls(s.max_header_bytes, s.header_timeout_seconds)


_limits: HeadLimits | None = None


def configure(s: Settings) -> None:
    """Set the limits for this process (`qa serve`); worker processes read theirs from QA_* variables."""
    global _limits
    _limits = HeadLimits.of(s)


def limits() -> HeadLimits:
    if _limits is None:
        configure(Settings())
    return _limits


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Counts the bytes of each request head as they arrive, and gives each head a deadline: from when the
    connection opens, and again from the end of each response (the next request's head)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head_limits = limits()
        self.awaiting_head, self.head_bytes = True, 0
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.awaiting_head:
            self.head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a chunk that completes a small head and carries body bytes is not a big head.
        if self.awaiting_head and self.head_bytes > self.head_limits.max_bytes:
            message = f"request headers are over {self.head_limits.max_bytes} bytes"
            self._refuse(431, "request_headers_too_large", message)

    def on_headers_complete(self) -> None:
        self.awaiting_head, self.head_bytes = False, 0
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.awaiting_head = True  # what comes next is the next request's head

    def on_response_complete(self) -> None:
        # With no pipelined request waiting, self.cycle is the request just answered.
        body_unread = not self.pipeline and self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if body_unread:  # answered without its body (an error): reading the rest could take for ever
            self.transport.close()
        elif self.awaiting_head:
            self._start_head_timer()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self.head_timer = self.loop.call_later(self.head_limits.timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.head_bytes:  # a request began: say why it ends
            message = f"request headers did not arrive within {self.head_limits.timeout:g} s"
            self._refuse(408, "request_timeout", message)
        else:
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer in the service's error format and close: there is no app request to route this through."""
        if self.transport.is_closing():
            return
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        head = [STATUS_LINE[status], *(n + b": " + v + b"\r\n" for n, v in self.server_state.default_headers)]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body)]
        self.transport.write(b"".join([*head, b"connection: close\r\n\r\n", body]))
        self.transport.close()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        self.logger.info("refused a request from %s: %s", client, message)
