"""The delivery side of the NATS buffer: a sink's durable pull consumer.

``poll`` fetches messages (requests) and hands them out; those beyond the batch's budget are held
for the next poll. A batch's ``MessageAck`` records nothing in the state database (JetStream keeps
the consumer's position) and acknowledges its messages in ``settle``, after the sink committed;
a crash in between means a redelivery after ``ack_wait``, which the sink drops by event id.
While a batch is being worked on (a slow sink, retries), its messages are marked in progress
every third of ``ack_wait`` so they are not delivered to another worker meanwhile.

A message delivered ``max_deliver`` times (workers died on it) is handed out marked ``final``:
delivery sends its events to the dead letters (``redelivered_too_often``) and acknowledges it.
Redeliveries are counted (``redelivered``). The order of delivery is the stream's, but with
several workers per sink it is not promised across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from typing import Any

import msgspec

from headrace.buffer.base import Backlog, Polled, ReadItem
from headrace.buffer.nats.connection import LoopThread, problem_of
from headrace.buffer.nats.stream import consumer_config, consumer_name
from headrace.buffer.records import decode_request
from headrace.config.buffers import NatsBuffer as NatsSettings
from headrace.errors import BufferUnavailable

log = logging.getLogger("headrace.buffer.nats")
FETCH_MESSAGES = 64  # messages asked for by one fetch (each holds a whole request)
FETCH_WAIT = 0.5  # seconds a fetch waits for a first message when none is there
CALL_TIMEOUT = 30.0  # seconds any one call to the server may take


class MessageAck:
    """The messages of one batch, acknowledged once the sink committed them."""

    def __init__(self, reader: JetStreamReader) -> None:
        self.reader = reader
        self.messages: list[Any] = []

    @property
    def empty(self) -> bool:
        return not self.messages

    def include(self, progress: Any) -> None:
        assert isinstance(progress, list)
        self.messages.extend(progress)

    def record(self, conn: sqlite3.Connection) -> None:
        """Nothing to record: JetStream keeps the consumer's position."""

    def settle(self) -> None:
        self.reader.acknowledge(self.messages)


class JetStreamReader:
    """A sink's ``BufferReader`` over its durable consumer (see the module docstring)."""

    def __init__(
        self, settings: NatsSettings, loop: LoopThread, js: Any, sink: str, subjects: list[str]
    ) -> None:
        self.settings = settings
        self.loop = loop
        self.js = js
        self.sink = sink
        self.subjects = subjects
        self.corrupt = 0
        self.redelivered = 0
        self.unacknowledged = 0  # acknowledgements that could not be sent
        self._subscription: Any = None
        self._held: list[Any] = []  # fetched, not yet handed out
        self._outstanding: dict[int, Any] = {}  # handed out, not yet acknowledged: id → msg
        self._lock = threading.Lock()  # the heartbeat (loop thread) reads what delivery changes
        self._heartbeat: asyncio.Task[None] | None = None

    def open(self) -> None:
        """Create (or bind to) the sink's durable consumer."""
        self.loop.call(self._subscribe(), CALL_TIMEOUT)

    async def _subscribe(self) -> None:
        import nats.js.errors

        name = consumer_name(self.sink)
        config = consumer_config(self.settings, self.sink, self.subjects)
        try:
            info = await self.js.consumer_info(self.settings.stream, name)
        except nats.js.errors.NotFoundError:
            await self.js.add_consumer(self.settings.stream, config=config)
        else:
            if sorted(info.config.filter_subjects or [info.config.filter_subject]) != sorted(
                self.subjects
            ):  # the sink reads other sources than when the consumer was made
                await self.js.add_consumer(self.settings.stream, config=config)
        self._subscription = await self.js.pull_subscribe_bind(
            durable=name, stream=self.settings.stream
        )
        self._heartbeat = asyncio.get_running_loop().create_task(self._mark_in_progress())

    def poll(self, max_bytes: int, max_events: int = 1 << 62) -> Polled:
        """The next requests within the budget (one always fits); ``BufferUnavailable`` while
        the server cannot be asked (a restart, a leader election)."""
        if not self._held:
            try:
                self._held = self.loop.call(self._fetch(), CALL_TIMEOUT)
            except Exception as exc:
                raise BufferUnavailable(problem_of(exc, self.settings)) from exc
        items: list[ReadItem] = []
        taken: list[Any] = []
        budget, events = max_bytes, max_events
        while self._held and (not taken or (budget > 0 and events > 0)):
            message = self._held.pop(0)
            item = self._item(message)
            if item is None:
                continue
            if taken and (item.size > budget or item.request.count > events):
                self._held.insert(0, message)
                break
            taken.append(message)
            items.append(item)
            budget -= item.size
            events -= item.request.count
        with self._lock:
            for message in taken:
                self._outstanding[id(message)] = message
        return Polled(items, taken, bool(taken))

    async def _fetch(self) -> list[Any]:
        import nats.errors

        try:
            messages: list[Any] = await self._subscription.fetch(FETCH_MESSAGES, FETCH_WAIT)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        return messages

    def _item(self, message: Any) -> ReadItem | None:
        meta = message.metadata
        where = f"{self.settings.stream}#{meta.sequence.stream}"
        try:
            request = decode_request(message.data)
        except (msgspec.DecodeError, ValueError):
            self.corrupt += 1
            log.error("buffer: message %s is not a headrace request; it is skipped", where)
            self._term(message)  # never delivered again: counted and logged
            return None
        deliveries = int(meta.num_delivered)
        if deliveries > 1:
            self.redelivered += 1
        final = deliveries >= self.settings.max_deliver
        return ReadItem(request, len(message.data), where, deliveries, final)

    def _term(self, message: Any) -> None:
        with contextlib.suppress(Exception):
            self.loop.call(message.term(), CALL_TIMEOUT)

    def acknowledgement(self) -> MessageAck:
        return MessageAck(self)

    def acknowledge(self, messages: list[Any]) -> None:
        """Acknowledge ``messages`` (the sink committed them). An acknowledgement that cannot
        be sent is logged, not raised: the server delivers those messages again after
        ``ack_wait``, and the sink, which has their events, stores none of them twice."""
        with self._lock:
            for message in messages:
                self._outstanding.pop(id(message), None)
        if not messages:
            return
        try:
            self.loop.call(_ack_all(messages), CALL_TIMEOUT)
        except Exception as exc:
            self.unacknowledged += len(messages)
            log.warning("buffer: cannot acknowledge %d message(s) of %s (%s); they will be "
                        "delivered again and skipped by id", len(messages), self.sink,
                        problem_of(exc, self.settings))  # fmt: skip

    async def _mark_in_progress(self) -> None:
        every = max(1.0, self.settings.ack_wait / 3)
        while True:
            await asyncio.sleep(every)
            with self._lock:
                working = [*self._outstanding.values(), *self._held]
            for message in working:
                with contextlib.suppress(Exception):
                    await message.in_progress()

    def backlog(self) -> Backlog:
        """Messages not yet acknowledged (JetStream counts messages, not bytes: ``bytes`` is an
        estimate from the stream's average message size)."""
        try:
            info = self.loop.call(self._consumer_backlog(), 5.0)
        except Exception as exc:
            log.debug("buffer: cannot read the consumer of %s: %s", self.sink, exc)
            return Backlog(0, None)
        return info

    async def _consumer_backlog(self) -> Backlog:
        name = consumer_name(self.sink)
        consumer = await self.js.consumer_info(self.settings.stream, name)
        stream = await self.js.stream_info(self.settings.stream)
        waiting = int(consumer.num_pending or 0) + int(consumer.num_ack_pending or 0)
        average = stream.state.bytes / stream.state.messages if stream.state.messages else 0
        oldest: int | None = None
        if waiting:
            first = int(consumer.ack_floor.stream_seq or 0) + 1
            with contextlib.suppress(Exception):
                message = await self.js.get_msg(self.settings.stream, seq=first)
                oldest = decode_request(message.data).received_at_us
        return Backlog(int(waiting * average), oldest, waiting)

    def close(self) -> None:
        if self._heartbeat is not None:
            self.loop.call(_cancelled(self._heartbeat), 5.0)
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                self.loop.call(self._subscription.unsubscribe(), 5.0)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _ack_all(messages: list[Any]) -> None:
    for message in messages:
        await message.ack()


__all__ = ["JetStreamReader", "MessageAck"]
