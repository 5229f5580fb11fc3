"""The distributed buffer (``buffer: {type: nats}``): a NATS JetStream stream that ingest nodes
publish to and delivery workers on any machines consume, one durable consumer per sink.

    connection  connecting as the settings say; a loop thread for callers that are threads
    stream      the stream and the consumers headrace creates and checks
    writer      an ingest worker's pipelined publishes (``BufferWriter``)
    reader      a sink's durable pull consumer (``BufferReader``)
    replay      a time range of the stream, and given requests, published again

``NatsBuffer`` is the ``headrace.buffer.Buffer`` over them. Retention is the stream's own
(``max_age``, ``max_bytes``), so ``recover`` and ``expire`` have nothing to do.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from headrace.buffer.nats.connection import LoopThread, open_connection, problem_of
from headrace.buffer.nats.reader import JetStreamReader
from headrace.buffer.nats.replay import publish_requests, replay_range
from headrace.buffer.nats.stream import StreamProblem, delivery_state, ensure_stream, subject_of
from headrace.buffer.nats.writer import NatsWriter
from headrace.buffer.records import BufferedRequest
from headrace.config.buffers import NatsBuffer as NatsSettings
from headrace.errors import BufferUnavailable

STATE_TIMEOUT = 3.0  # seconds a dashboard waits for JetStream's figures


class NatsBuffer:
    """The JetStream buffer of one process (see the package docstring)."""

    def __init__(self, settings: NatsSettings, data_dir: Path | None = None) -> None:
        self.settings = settings
        self._loop: LoopThread | None = None
        self._nc: Any = None
        self._js: Any = None
        self._lock = threading.Lock()

    def writer(self, name: str) -> NatsWriter:
        return NatsWriter(self.settings, name)

    def _client(self, timeout: float | None = None) -> tuple[LoopThread, Any]:
        """The process's loop thread and JetStream context, connected on first use (within
        ``timeout``, default twice ``connect_timeout``); ``BufferUnavailable`` says why not."""
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread("nats-buffer")
            if self._js is None:
                failures: list[BaseException] = []
                try:
                    self._nc = self._loop.call(
                        self._connect(failures), timeout or self.settings.connect_timeout * 2 + 1
                    )
                except StreamProblem as exc:
                    raise BufferUnavailable(str(exc)) from None
                except Exception as exc:
                    cause = failures[-1] if failures and isinstance(exc, TimeoutError) else exc
                    raise BufferUnavailable(problem_of(cause, self.settings)) from None
                self._js = self._nc.jetstream()
            return self._loop, self._js

    async def _connect(self, failures: list[BaseException]) -> Any:
        """Connect (the client keeps reconnecting afterwards) and check the stream; the
        caller's deadline ends a first connection that cannot be made, ``failures`` says why."""

        async def failed(exc: BaseException) -> None:
            failures.append(exc)

        nc = await open_connection(self.settings, error_cb=failed)
        try:
            await ensure_stream(nc.jetstream(), self.settings)
        except BaseException:
            await nc.close()
            raise
        return nc

    def reader(self, sink: str, conn: sqlite3.Connection, sources: list[str]) -> JetStreamReader:
        loop, js = self._client()
        subjects = [subject_of(self.settings, source) for source in sorted(sources)]
        reader = JetStreamReader(self.settings, loop, js, sink, subjects)
        reader.open()
        return reader

    def recover(self) -> int:
        return 0  # the stream has no torn tails: a publish is whole or not there

    def expire(self, conn: sqlite3.Connection, sinks: list[str]) -> int:
        return 0  # the stream keeps max_age / max_bytes itself

    def replay(
        self,
        stream: str,
        since_us: int,
        until_us: int,
        sinks: list[str] | None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        loop, js = self._client()
        return loop.call(
            replay_range(js, self.settings, stream, since_us, until_us, sinks, progress), None
        )

    def requeue(self, requests: Iterable[BufferedRequest]) -> int:
        loop, js = self._client()
        return loop.call(publish_requests(js, self.settings, list(requests)), None)

    def delivery_state(self, sinks: list[str]) -> dict[str, Any]:
        """What JetStream knows of each sink's delivery, across every machine delivering to it
        (its durable consumer), and of the stream; ``BufferUnavailable`` when it cannot say."""
        loop, js = self._client(timeout=STATE_TIMEOUT)
        try:
            return loop.call(delivery_state(js, self.settings, sinks), STATE_TIMEOUT)
        except Exception as exc:
            raise BufferUnavailable(problem_of(exc, self.settings)) from None

    def close(self) -> None:
        """Close the process's connection and its loop thread."""
        with self._lock:
            if self._loop is not None:
                if self._nc is not None:
                    with contextlib.suppress(Exception):  # closing: nothing more to do about it
                        self._loop.call(self._nc.close(), 10.0)
                self._loop.stop()
            self._loop = self._nc = self._js = None


__all__ = ["NatsBuffer"]
