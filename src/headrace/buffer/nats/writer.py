"""The ingest side of the NATS buffer: one JetStream publish per accepted request, pipelined.

``commit`` publishes the request (its bytes as ``headrace.buffer.records`` encodes them) to
``<prefix>.<source id>`` with ``Nats-Msg-Id`` = the request's id, and returns once the server's
PubAck is back: only then is the 2xx sent. Concurrent requests publish concurrently on the
worker's one connection (up to ``max_pending_publishes`` in flight), so a slow ack holds back
only its own request. A
repeated publish of the same id (a retry after a lost ack) is acknowledged as a duplicate and
stored once. No PubAck within ``publish_timeout``, a full stream, no quorum, or no connection:
``BufferFull``, answered 503 with Retry-After, never a 2xx.

The worker connects in the background when it starts and keeps reconnecting; until it is
connected (and the stream is usable) ``problem`` says why, for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from headrace.buffer.nats.connection import open_connection, problem_of
from headrace.buffer.nats.stream import StreamProblem, ensure_stream, subject_of
from headrace.buffer.orderlog import ORDER_LOG, note_order
from headrace.buffer.records import BufferedRequest, encode_request
from headrace.config.buffers import NatsBuffer as NatsSettings
from headrace.errors import BufferFull
from headrace.retry import RetryPolicy

log = logging.getLogger("headrace.buffer.nats")
CONNECT_RETRY = RetryPolicy(initial=0.5, maximum=10.0, jitter="half")
STREAM_BYTES_EVERY = 2.0  # seconds between two reads of the stream's size
RETRY_AFTER = 2  # seconds a refused sender is told to wait


class NatsWriter:
    """One ingest worker's ``BufferWriter`` over JetStream (see the module docstring)."""

    def __init__(self, settings: NatsSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.commits = 0
        self.frames_committed = 0
        self._nc: Any = None
        self._js: Any = None
        self._problem: str | None = "connecting to NATS"
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stream_bytes = 0
        self._bytes_read_at = 0.0
        self._in_flight = asyncio.Semaphore(settings.max_pending_publishes)

    def start(self) -> int:
        """Start connecting (in the running event loop); nothing to recover, so returns 0."""
        self._task = asyncio.get_running_loop().create_task(self._connect())
        return 0

    async def _connect(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                self._nc = await open_connection(
                    self.settings,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                )
                self._js = self._nc.jetstream()
                await ensure_stream(self._js, self.settings)
            except StreamProblem as exc:
                self._problem = str(exc)
            except Exception as exc:
                self._problem = problem_of(exc, self.settings)
            else:
                self._problem = None
                self._ready.set()
                log.info("buffer: publishing to JetStream stream %s", self.settings.stream)
                return
            if self._nc is not None:
                await self._close_quietly()
            delay = CONNECT_RETRY.delay(attempt)
            log.warning("buffer: %s; trying again in %.1fs", self._problem, delay)
            await asyncio.sleep(delay)

    async def _disconnected(self) -> None:
        if self._ready.is_set():  # while connecting, the reason it failed stands
            self._problem = f"disconnected from NATS ({', '.join(self.settings.servers)})"
            self._ready.clear()

    async def _reconnected(self) -> None:
        self._problem = None
        self._ready.set()

    async def _error(self, exc: Exception) -> None:
        problem = problem_of(exc, self.settings)
        if not self._ready.is_set():  # the reason the (re)connection fails, for /readyz
            if problem != self._problem:  # the client retries every half second: said once
                log.warning("buffer: %s; still trying", problem)
            self._problem = problem
        else:
            log.warning("buffer: NATS client: %s", problem)

    async def commit(self, request: BufferedRequest) -> None:
        """Return once JetStream acknowledged ``request``; ``BufferFull`` if it did not."""
        deadline = time.monotonic() + self.settings.publish_timeout
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), self.settings.publish_timeout)
            except TimeoutError:
                raise BufferFull(self._problem or "NATS is not reachable", RETRY_AFTER) from None
        ack = await self._publish(request, deadline)
        if ack.stream != self.settings.stream:
            raise BufferFull(
                f"subject {subject_of(self.settings, request.source)} is stored by stream "
                f"{ack.stream}, not buffer.stream {self.settings.stream}", RETRY_AFTER,
            )  # fmt: skip
        if ORDER_LOG:  # a test hook: the PubAck is back
            note_order("committed", request.base_id)
        self.commits += 1
        self.frames_committed += 1

    async def _publish(self, request: BufferedRequest, deadline: float) -> Any:
        import nats.errors
        import nats.js.errors

        subject = subject_of(self.settings, request.source)
        headers = {"Nats-Msg-Id": message_id(request)}
        try:
            # concurrent requests publish concurrently on the one connection (each waits for
            # its own PubAck); the semaphore only bounds how many are in flight
            await asyncio.wait_for(
                self._in_flight.acquire(), max(0.001, deadline - time.monotonic())
            )
            try:
                return await self._js.publish(
                    subject, encode_request(request), headers=headers,
                    timeout=max(0.001, deadline - time.monotonic()),
                )  # fmt: skip
            finally:
                self._in_flight.release()
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise BufferFull(
                f"JetStream did not acknowledge within {self.settings.publish_timeout:g} s",
                RETRY_AFTER,
            ) from exc
        except nats.js.errors.APIError as exc:
            raise BufferFull(_refusal(exc, self.settings), RETRY_AFTER) from exc
        except nats.errors.Error as exc:
            raise BufferFull(problem_of(exc, self.settings), RETRY_AFTER) from exc

    def problem(self) -> str | None:
        return self._problem

    def stored_bytes(self) -> int:
        """The stream's size at the last read (read again in the background every few s)."""
        now = time.monotonic()
        if self._js is not None and now - self._bytes_read_at >= STREAM_BYTES_EVERY:
            self._bytes_read_at = now
            asyncio.get_running_loop().create_task(self._read_stream_bytes())
        return self._stream_bytes

    async def _read_stream_bytes(self) -> None:
        try:
            info = await self._js.stream_info(self.settings.stream)
            self._stream_bytes = int(info.state.bytes)
        except Exception as exc:  # a gauge: the next read tries again
            log.debug("buffer: cannot read the stream's size: %s", exc)

    async def stop(self) -> None:
        """Wait for the publishes in flight, then close the connection."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self._close_quietly()  # each commit in flight has its own deadline

    async def _close_quietly(self) -> None:
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception as exc:
                log.debug("buffer: closing the NATS connection: %s", exc)
            self._nc = self._js = None


def message_id(request: BufferedRequest) -> str:
    """The ``Nats-Msg-Id`` of a request: its id, so a repeated publish is stored once."""
    return request.base_id.hex()


def _refusal(exc: Any, settings: NatsSettings) -> str:
    """Why JetStream refused a publish, for the 503's message."""
    text = str(getattr(exc, "description", "") or exc)
    if "maximum bytes" in text or "maximum messages" in text or "resource" in text.lower():
        return f"stream {settings.stream} is full (buffer.max_bytes {settings.max_bytes}): {text}"
    return problem_of(exc, settings)


__all__ = ["NatsWriter", "message_id"]
