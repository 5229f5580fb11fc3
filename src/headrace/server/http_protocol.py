"""The HTTP/1.1 protocol of an ingest worker: uvicorn's httptools protocol with the limits of the
``server:`` section (``config/server.py``), which uvicorn does not have.

uvicorn neither limits the count or size of headers nor puts a deadline on receiving a request,
so a client can hold a connection (a file descriptor, a slot) for ever by trickling bytes, or
make a worker buffer a 16 MiB header. Here each connection is in one phase at a time:

    phase   waiting for                    limits
    head    the request line and headers   max_url_bytes (414), max_headers, max_header_bytes
                                           (431), head_timeout (408)
    body    the rest of the request body   min_body_rate, body_grace (408, or closed)
    done    the app's answer               none: the app's own business (commit, backpressure)
    idle    the next request               keepalive_timeout (uvicorn's keep-alive timer)

and each worker caps its open connections (``ConnectionGuard``): past ``max_connections`` a new
connection is answered 503 and closed at once.

Sizes are counted as the parser reports them: the URL in pieces as it arrives, each header once
it is complete. httptools holds a header that is still arriving until its end, so the raw bytes
received while a head is incomplete are counted too, and a head passing ``max_url_bytes +
max_header_bytes`` (plus a little for the method and line ends) is refused before it is whole.

Deadlines are checked by one sweep per worker every quarter of a second, not a timer per
connection. A sweep that runs late (the event loop was blocked) moves every deadline by its
delay: a busy worker never blames its clients for its own stall. Time the server is not reading
(flow control paused it, or a sender waits for ``100 Continue``) does not count either.

A refusal is written straight to the transport with the JSON body every refusal has
(``{"error": reason, "message": ...}``, see ``web/asgi.py``) and ``Connection: close``. The
connection then discards what else arrives and closes after ``LINGER_SECONDS``, so the client's
kernel does not reset the connection before the client has read the answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from headrace.config.server import ServerSettings
from headrace.server.http_writes import HeadWithBody
from headrace.telemetry import metrics as m
from headrace.web.asgi import encode_json

log = logging.getLogger("headrace.http")

HEAD, BODY, DONE, IDLE = "head", "body", "done", "idle"
SWEEP_SECONDS = 0.25
LATE_SECONDS = 0.5
"""A sweep later than this means the loop was blocked: deadlines move by the delay."""
LINGER_SECONDS = 2.0
HEAD_SLACK_BYTES = 1024
"""Room in the raw head for the method, the HTTP version, separators and the blank line."""
FD_RESERVE = 128
"""File descriptors a worker keeps for itself (segments, databases, logs, the listener)."""

OPEN = m.key("headrace_http_connections")
REFUSED = m.key("headrace_http_connections_refused_total")
TIMEOUTS = {
    phase: m.key("headrace_http_timeouts_total", phase=phase) for phase in (HEAD, BODY, IDLE)
}
HEADER_LIMITS = {
    limit: m.key("headrace_http_header_limit_total", limit=limit)
    for limit in ("max_url_bytes", "max_headers", "max_header_bytes")
}


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop the parser: the head passed a limit."""

    def __init__(self, status: int, limit: str, maximum: int) -> None:
        super().__init__(limit)
        self.status = status
        self.limit = limit
        self.maximum = maximum

    def body(self) -> bytes:
        """The refusal's JSON body."""
        if self.status == 414:
            reason, message = (
                "uri_too_long",
                f"the request target is longer than {self.maximum} bytes",
            )
        elif self.limit == "max_headers":
            reason, message = (
                "headers_too_large",
                f"the request has more than {self.maximum} headers",
            )
        else:
            reason, message = (
                "headers_too_large",
                f"the headers are larger than {self.maximum} bytes",
            )
        return encode_json({"error": reason, "message": message, "limit": self.limit,
                            "max": self.maximum})  # fmt: skip


def connection_cap(configured: int) -> int:
    """``configured``, or fewer when the open-file limit could not hold that many connections
    beside ``FD_RESERVE`` (the soft limit is raised towards the hard one first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = configured + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return configured
    cap = max(1, soft - FD_RESERVE)
    log.warning("server.max_connections is %d but the open-file limit is %d: capped at %d",
                configured, soft, cap)  # fmt: skip
    return cap


class ConnectionGuard:
    """What one worker's connections share: the limits, the metrics, the open connections and
    the sweep that enforces their deadlines."""

    def __init__(self, settings: ServerSettings, metrics: m.Registry) -> None:
        self.settings = settings
        self.metrics = metrics
        self.max_connections = connection_cap(settings.max_connections)
        self.raw_head_limit = settings.max_url_bytes + settings.max_header_bytes + HEAD_SLACK_BYTES
        self.open: set[LimitedHttpProtocol] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._due = 0.0

    def admit(self, conn: LimitedHttpProtocol) -> bool:
        """Take ``conn`` in, or count it refused when the worker holds ``max_connections``."""
        if len(self.open) >= self.max_connections:
            self.metrics.add(REFUSED)
            return False
        self.open.add(conn)
        self.metrics.set(OPEN, len(self.open))
        if self._sweep is None:
            self._schedule(conn.loop)
        return True

    def release(self, conn: LimitedHttpProtocol) -> None:
        """Forget a closed connection."""
        self.open.discard(conn)
        self.metrics.set(OPEN, len(self.open))

    def count_timeout(self, phase: str) -> None:
        self.metrics.add(TIMEOUTS[phase])

    def count_refusal(self, refusal: HeadTooLarge) -> None:
        self.metrics.add(HEADER_LIMITS[refusal.limit])

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + SWEEP_SECONDS
        self._sweep = loop.call_at(self._due, self._run_sweep, loop)

    def _run_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = loop.time()
        late = now - self._due
        for conn in list(self.open):
            if late > LATE_SECONDS:
                conn.postpone(late)
            conn.check_deadline(now)
        if self.open:
            self._schedule(loop)


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the ``server:`` limits; ``protocol_class`` makes the
    subclass a worker passes to uvicorn, bound to its ``ConnectionGuard``."""

    guard: ClassVar[ConnectionGuard]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = self.guard.settings
        self.timeout_keep_alive = settings.keepalive_timeout  # type: ignore[assignment]
        self._head_timeout = settings.head_timeout
        self._grace = settings.body_grace
        self._rate = float(settings.min_body_rate)
        self._phase = HEAD
        self._deadline = 0.0
        self._admitted = False
        self._closing = False
        self._linger: asyncio.TimerHandle | None = None
        self._refusal: HeadTooLarge | None = None
        self._messages = 0
        self._url_bytes = self._header_count = self._header_bytes = self._raw_head = 0

    # -- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            body = encode_json({"error": "too_many_connections",
                                "message": "this worker holds as many connections as it may"})  # fmt: skip
            self._write_answer(503, body, [(b"retry-after", b"1")])
            self._closing = True
            transport.close()
            return
        self._admitted = True
        self._deadline = self.loop.time() + self._head_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._linger is not None:
            self._linger.cancel()
        if self._admitted:
            self.guard.release(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:  # answered and closing: what else arrives is dropped
            return
        self._unset_keepalive_if_required()
        if self._phase in (IDLE, DONE):
            self._start_head()
        messages = self._messages
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse_head(self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._phase == HEAD:
            # the header still arriving is held by httptools, not reported: count it raw
            if self._messages == messages:
                self._raw_head += len(data)
            else:
                self._raw_head = self._url_bytes + self._header_bytes
            if self._raw_head > self.guard.raw_head_limit:
                limit = self.guard.settings.max_header_bytes
                self._refuse_head(HeadTooLarge(431, "max_header_bytes", limit))

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.guard.count_timeout(IDLE)
        super().timeout_keep_alive_handler()

    # -- the parser's callbacks: phases and sizes -------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages += 1
        self._url_bytes = self._header_count = self._header_bytes = self._raw_head = 0
        if self._phase != HEAD:  # a pipelined request, begun in the same read as the last
            self._start_head()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.guard.settings.max_url_bytes:
            self._stop_parser(HeadTooLarge(414, "max_url_bytes", self.guard.settings.max_url_bytes))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        settings = self.guard.settings
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # as the line "Name: value\r\n"
        if self._header_count > settings.max_headers:
            self._stop_parser(HeadTooLarge(431, "max_headers", settings.max_headers))
        if self._header_bytes > settings.max_header_bytes:
            self._stop_parser(HeadTooLarge(431, "max_header_bytes", settings.max_header_bytes))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = BODY
        self._deadline = self.loop.time() + self._grace if self._rate else math.inf
        super().on_headers_complete()
        if self.cycle is not None and self.scope["method"] != "HEAD":  # one write (http_writes)
            self.cycle.transport = HeadWithBody(self.transport)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if self._rate:  # each byte buys 1/rate seconds; no more credit than the grace
            now = self.loop.time()
            self._deadline = min(self._deadline + len(body) / self._rate, now + self._grace)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = DONE
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._phase == DONE:
            self._phase = IDLE
        super().on_response_complete()

    # -- deadlines --------------------------------------------------------------------------

    def postpone(self, seconds: float) -> None:
        """Move the deadline by ``seconds`` the worker could not run."""
        self._deadline += seconds

    def check_deadline(self, now: float) -> None:
        """Close the connection if its head or body is later than its deadline (the sweep)."""
        if self._phase not in (HEAD, BODY) or self._closing:
            return
        if self.flow is not None and (self.flow.read_paused or self._awaits_continue()):
            allowance = self._head_timeout if self._phase == HEAD else self._grace
            self._deadline = max(self._deadline, now + allowance)
            return
        if now < self._deadline:
            return
        self.guard.count_timeout(self._phase)
        if self._phase == HEAD:
            self._head_timed_out()
        else:
            self._body_timed_out()

    def _awaits_continue(self) -> bool:
        return (
            self._phase == BODY and self.cycle is not None and self.cycle.waiting_for_100_continue
        )

    def _start_head(self) -> None:
        self._phase = HEAD
        self._deadline = self.loop.time() + self._head_timeout

    def _head_timed_out(self) -> None:
        if self._answering():  # a pipelined request's head: close once the answer is out
            self.cycle.keep_alive = False
            self._closing = True
            self._phase = DONE
            return
        self._close_with(408, _timeout_body("the request head"))

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self._closing = True
            self.transport.close()
            return
        cycle.disconnected = True  # the app's receive() gets http.disconnect; its sends go nowhere
        cycle.message_event.set()
        self._close_with(408, _timeout_body("the request body"))

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    # -- refusals ---------------------------------------------------------------------------

    def _stop_parser(self, refusal: HeadTooLarge) -> None:
        self._refusal = refusal
        raise refusal  # httptools stops and raises HttpParserCallbackError from feed_data

    def _refuse_head(self, refusal: HeadTooLarge) -> None:
        self.guard.count_refusal(refusal)
        if self._answering():  # an earlier pipelined request's answer comes first
            self.cycle.keep_alive = False
            self._closing = True
            return
        self._close_with(refusal.status, refusal.body())

    def _close_with(self, status: int, body: bytes) -> None:
        """Answer ``status`` with ``body``, then drop what arrives and close after a linger."""
        self._write_answer(status, body)
        self._closing = True
        self._phase = DONE
        if self.flow is not None:
            self.flow.resume_reading()  # keep draining, or unread bytes turn the close into RST
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _write_answer(
        self, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [*self.server_state.default_headers, (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
                   *(extra or [])]  # fmt: skip
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[status] + head + b"\r\n" + body)


def _timeout_body(what: str) -> bytes:
    return encode_json({"error": "request_timeout", "message": f"{what} arrived too slowly"})


def protocol_class(settings: ServerSettings, metrics: m.Registry) -> type[LimitedHttpProtocol]:
    """The protocol class a worker passes to uvicorn (``Config(http=...)``): its connections
    share one ``ConnectionGuard`` that counts into ``metrics``."""

    class WorkerHttpProtocol(LimitedHttpProtocol):
        guard = ConnectionGuard(settings, metrics)

    return WorkerHttpProtocol
