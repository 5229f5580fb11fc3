"""Sending events to headrace from Python: ``Client`` (a background thread) and ``AsyncClient``
(an asyncio task).

    from headrace.client import Client

    with Client("http://127.0.0.1:8080", stream="orders", token="...") as client:
        client.track({"order": 42, "total": 99.5})   # queued; sent in batches

Events wait in a bounded in-memory queue and go out as one JSON array per batch (gzip-compressed
above ``gzip_min_bytes``) when ``batch_size`` events are waiting or ``flush_interval`` seconds
have passed. A batch answered 429 or 503 (or 500/502/504, or not answered at all) is sent again
after a backoff that doubles up to ``max_backoff``, or after the server's ``Retry-After`` when it
gives one. A batch refused for good (another 4xx) is dropped with a log line, as is an event
added to a full queue (``block=False``, the default: the application never waits on analytics);
``sent``, ``dropped`` and ``failed`` count them. ``flush()`` returns once everything queued so
far is sent or given up on; ``close()`` flushes, then stops: nothing queued before it is lost
while the server answers within ``close_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from headrace.retry import RetryPolicy

log = logging.getLogger("headrace.client")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_json = msgspec.json.Encoder()


class QueueFull(Exception):
    """The client's queue is full (raised only with ``block=True`` after ``timeout``)."""


@dataclass
class ClientSettings:
    """How a client batches and retries (shared by ``Client`` and ``AsyncClient``)."""

    endpoint: str
    stream: str
    token: str | None = None
    batch_size: int = 100
    flush_interval: float = 1.0
    max_queue: int = 10_000
    gzip_min_bytes: int = 1024
    timeout: float = 10.0
    max_attempts: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    close_timeout: float = 30.0

    @property
    def url(self) -> str:
        return f"{self.endpoint.rstrip('/')}/v1/streams/{quote(self.stream, safe='')}/events"

    def request(self, events: list[bytes]) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one batch of events already encoded by ``encode``."""
        body = b"[" + b",".join(events) + b"]"
        headers = {"content-type": "application/json", "user-agent": "headrace-python"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if len(body) >= self.gzip_min_bytes:
            body = gzip.compress(body, compresslevel=5)
            headers["content-encoding"] = "gzip"
        return body, headers

    def backoff(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: Retry-After if given, else jittered
        exponential backoff."""
        given = parse_retry_after(retry_after)
        if given is not None:
            return min(given, self.max_backoff)
        return self.retry_policy().delay(attempt)

    def retry_policy(self) -> RetryPolicy:
        """How failed sends are retried (``max_attempts`` tries in all)."""
        return RetryPolicy(initial=self.initial_backoff, maximum=self.max_backoff,
                           attempts=self.max_attempts, jitter="half")  # fmt: skip


def encode(event: dict[str, Any]) -> bytes:
    """One event as JSON, done in ``track()`` so that an event that cannot be encoded fails
    there, in the caller's hands, and never reaches (and stops) the sender."""
    if not isinstance(event, dict):
        raise TypeError(f"an event is a dict, not {type(event).__name__}")
    try:
        return _json.encode(event)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise TypeError(f"the event cannot be sent as JSON: {exc}") from exc


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) in seconds from now."""
    if not value:
        return None
    value = value.strip()
    # ASCII digits only: str.isdigit() also accepts "²" or "٣", which float() refuses
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class _Outcome:
    SENT, RETRY, REFUSED = range(3)


def _judge(status: int) -> int:
    if 200 <= status < 300:
        return _Outcome.SENT
    return _Outcome.RETRY if status in RETRY_STATUSES else _Outcome.REFUSED


class _Counts:
    def __init__(self) -> None:
        self.sent = 0
        self.dropped = 0
        self.failed = 0


_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forget_parent()


# A client made at import time (a web app under gunicorn --preload, say) is copied into each
# worker process without its sender thread: each child gets a fresh, empty client of its own.
os.register_at_fork(after_in_child=_after_fork_in_child)


class Client(_Counts):
    """A thread-backed client; see the module docstring. It survives ``fork()``: the child
    starts empty with a sender thread of its own (the parent sends what it had queued)."""

    def __init__(self, endpoint: str, stream: str, **settings: Any) -> None:
        super().__init__()
        self.settings = ClientSettings(endpoint, stream, **settings)
        self._closing = False
        self._orphans: list[httpx.Client] = []
        self._fresh()
        _clients.add(self)

    def _fresh(self) -> None:
        self._queue: deque[bytes] = deque()
        self._lock = threading.Condition()
        self._in_flight = 0
        self._http = httpx.Client(timeout=self.settings.timeout)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _forget_parent(self) -> None:
        """In a forked child: the parent's thread is gone, its lock may be held forever and its
        connections belong to the parent (closing them here could disturb the parent's TLS
        sessions, so they are kept unused)."""
        self._orphans.append(self._http)
        self.sent = self.dropped = self.failed = 0
        self._fresh()

    def _ensure_sender(self) -> None:
        """Start the sender thread if this process has none yet (called with the lock held)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="headrace-client", daemon=True)
            self._thread.start()

    def track(self, event: dict[str, Any], *, block: bool = False, timeout: float = 5.0) -> bool:
        """Queue one event; ``False`` if it was dropped because the queue is full. Raises
        ``TypeError`` for an event that cannot be encoded as JSON."""
        data = encode(event)
        with self._lock:
            if self._closing:
                raise RuntimeError("the client is closed")
            self._ensure_sender()
            if len(self._queue) >= self.settings.max_queue:
                if not block:
                    self.dropped += 1
                    log.warning("headrace client queue full; event dropped")
                    return False
                if not self._lock.wait_for(
                    lambda: len(self._queue) < self.settings.max_queue, timeout
                ):
                    raise QueueFull(f"no room in the queue after {timeout} s")
            self._queue.append(data)
            if len(self._queue) >= self.settings.batch_size:
                self._wake.set()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far; ``False`` if ``timeout`` ran out first."""
        self._wake.set()
        with self._lock:
            if not self._queue and not self._in_flight:
                return True
            self._ensure_sender()
            return self._lock.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def close(self) -> None:
        """Flush, then stop the sending thread."""
        with self._lock:
            self._closing = True
        self.flush(self.settings.close_timeout)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.settings.close_timeout)
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.settings.flush_interval)
            self._wake.clear()
            while True:
                with self._lock:
                    if not self._queue:
                        self._lock.notify_all()
                        break
                    size = min(len(self._queue), self.settings.batch_size)
                    batch = [self._queue.popleft() for _ in range(size)]
                    self._in_flight = len(batch)
                    self._lock.notify_all()  # room for blocked track() calls
                self._send_safely(batch)
                with self._lock:
                    self._in_flight = 0
                    self._lock.notify_all()
            with self._lock:
                if self._closing and not self._queue:
                    return

    def _send_safely(self, batch: list[bytes]) -> None:
        # an unexpected error must cost this batch only: the thread keeps sending the rest
        try:
            self._send(batch)
        except Exception:
            self.failed += len(batch)
            log.exception("headrace client could not send a batch of %d event(s)", len(batch))

    def _send(self, batch: list[bytes]) -> None:
        body, headers = self.settings.request(batch)
        for attempt in range(1, self.settings.max_attempts + 1):
            retry_after = None
            try:
                response = self._http.post(self.settings.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                outcome, detail = _Outcome.RETRY, str(exc)
            else:
                outcome, detail = _judge(response.status_code), response.text[:200]
                retry_after = response.headers.get("retry-after")
            if outcome == _Outcome.SENT:
                self.sent += len(batch)
                return
            if outcome == _Outcome.REFUSED or attempt == self.settings.max_attempts:
                break
            time.sleep(self.settings.backoff(attempt, retry_after))
        self.failed += len(batch)
        log.error("headrace refused a batch of %d event(s): %s", len(batch), detail)


class AsyncClient(_Counts):
    """An asyncio client; see the module docstring. Create it inside a running event loop."""

    def __init__(self, endpoint: str, stream: str, **settings: Any) -> None:
        super().__init__()
        self.settings = ClientSettings(endpoint, stream, **settings)
        self._queue: deque[bytes] = deque()
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._in_flight = 0
        self._closing = False
        self._http = httpx.AsyncClient(timeout=self.settings.timeout)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def track(self, event: dict[str, Any]) -> bool:
        """Queue one event (never waits); ``False`` if it was dropped because the queue is full.
        Raises ``TypeError`` for an event that cannot be encoded as JSON."""
        data = encode(event)
        if self._closing:
            raise RuntimeError("the client is closed")
        if len(self._queue) >= self.settings.max_queue:
            self.dropped += 1
            log.warning("headrace client queue full; event dropped")
            return False
        self._queue.append(data)
        if len(self._queue) >= self.settings.batch_size:
            self._wake.set()
        return True

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far; ``False`` if ``timeout`` ran out first."""
        self._wake.set()

        async def drained() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: not self._queue and not self._in_flight)

        try:
            await asyncio.wait_for(drained(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Flush, then stop the sending task."""
        self._closing = True
        await self.flush(self.settings.close_timeout)
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._task, self.settings.close_timeout)
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.flush_interval)
            self._wake.clear()
            while self._queue:
                size = min(len(self._queue), self.settings.batch_size)
                batch = [self._queue.popleft() for _ in range(size)]
                self._in_flight = len(batch)
                try:
                    await self._send(batch)
                except Exception:  # this batch is lost; the task keeps sending the rest
                    self.failed += len(batch)
                    log.exception(
                        "headrace client could not send a batch of %d event(s)", len(batch)
                    )
                self._in_flight = 0
            async with self._changed:
                self._changed.notify_all()
            if self._closing and not self._queue:
                return

    async def _send(self, batch: list[bytes]) -> None:
        body, headers = self.settings.request(batch)
        detail = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            retry_after = None
            try:
                response = await self._http.post(self.settings.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                outcome, detail = _Outcome.RETRY, str(exc)
            else:
                outcome, detail = _judge(response.status_code), response.text[:200]
                retry_after = response.headers.get("retry-after")
            if outcome == _Outcome.SENT:
                self.sent += len(batch)
                return
            if outcome == _Outcome.REFUSED or attempt == self.settings.max_attempts:
                break
            await asyncio.sleep(self.settings.backoff(attempt, retry_after))
        self.failed += len(batch)
        log.error("headrace refused a batch of %d event(s): %s", len(batch), detail)


__all__ = ["AsyncClient", "Client", "ClientSettings", "QueueFull", "encode", "parse_retry_after"]
