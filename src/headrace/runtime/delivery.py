"""The delivery worker of one sink: read its buffer, batch, transform, write, acknowledge.

A ``DeliveryWorker`` reads the buffer after what its sink acknowledged, gathers a batch until one
of its limits (events, bytes, age) is reached, hands it to the sink and acknowledges the batch
(in the state-database transaction that commits it, then to the buffer) only once the sink has
the events. Transient failures are retried with exponential backoff and full
jitter; terminal ones send the events to the dead-letter store with the reason and attempts.
On stop, the batch in hand is delivered (or left in the buffer if the sink is failing) and
nothing more is read.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from headrace.buffer import Acknowledgement, Buffer, BufferReader, ReadItem
from headrace.buffer.records import expand_events
from headrace.config.base import BatchSettings, RetrySettings
from headrace.errors import BufferUnavailable, TerminalSinkError, is_transient
from headrace.retry import RetryPolicy
from headrace.sinks.base import Sink
from headrace.storage import state
from headrace.telemetry.metrics import Registry, key
from headrace.transforms import CommitHook
from headrace.transforms.graph import SinkTransforms, original_of
from headrace.types import Event, FailedRecord

log = logging.getLogger("headrace.delivery")
POLL_INTERVAL = 0.05
BUFFER_RETRY = RetryPolicy(initial=0.5, maximum=10.0, jitter="half")
"""The waits while the buffer cannot be read (a NATS cluster electing a leader, a restart)."""


@dataclass
class _Batch:
    ack: Acknowledgement
    events: list[Event] = field(default_factory=list)
    bytes: int = 0
    started: float | None = None
    undecodable: list[FailedRecord] = field(default_factory=list)
    # stored requests not yet decoded into ``events``: a sink with ``write_requests`` may take
    # them as they are (Arrow parses the bodies); ``expand`` makes them events for the rest
    requests: list[ReadItem] = field(default_factory=list)
    count: int = 0  # events in hand, decoded or not
    transformed: bool = False
    refused: list[FailedRecord] = field(default_factory=list)  # by a transform
    hooks: list[CommitHook] = field(default_factory=list)
    # event id → the event as read from the buffer, before the transforms: what the dead-letter
    # store keeps, since a replay puts it back under its source and the transforms run again
    originals: dict[str, Event] = field(default_factory=dict)

    def as_received(self, records: list[FailedRecord]) -> list[FailedRecord]:
        """``records`` (the sink's refusals of transformed events) carrying the original events,
        one each (a function may have made several events of one)."""
        if not self.originals:
            return records
        out: dict[str, FailedRecord] = {}
        for r in records:
            original = original_of(self.originals, r.event.id) or r.event
            out.setdefault(original.id, FailedRecord(original, r.reason, r.error, r.processing))
        return list(out.values())

    def empty(self) -> bool:
        return self.ack.empty

    def add(self, item: ReadItem) -> None:
        """Decode ``item``'s events into the batch (an undecodable body becomes a dead letter)."""
        try:
            events = expand_events(item.request)
        except (msgspec.DecodeError, ValueError) as exc:
            request = item.request
            event = Event(
                item.where,
                request.stream,
                request.source,
                request.received_at_us,
                {"_raw": request.body.decode("utf-8", "replace")},
            )
            self.undecodable.append(FailedRecord(event, "decode_error", str(exc)))
            return
        self.events.extend(events)

    def expand(self) -> None:
        """Decode the requests still held as they are (the dict path takes over)."""
        requests, self.requests = self.requests, []
        for item in requests:
            self.add(item)


class DeliveryWorker:
    """Moves events from the buffer into one sink; see the module docstring."""

    def __init__(
        self,
        sink: Sink,
        inputs: list[str],
        *,
        batch: BatchSettings,
        retry: RetrySettings,
        buffer: Buffer,
        state_path: Path,
        metrics: Registry,
        stop: threading.Event,
        transforms: SinkTransforms | None = None,
        opener: Callable[[], bool] | None = None,
    ) -> None:
        self.sink = sink
        self.opener = opener  # opens the sink first, in this thread (False: stopped meanwhile)
        self.transforms = transforms if transforms is not None and transforms.active else None
        self.inputs = set(inputs)
        self.batch_settings = batch
        self.retry = retry.policy()
        self.buffer = buffer
        self.state_path = state_path
        self.metrics = metrics
        self.stop = stop
        self.reader: BufferReader | None = None
        self._k_delivered = key("headrace_events_delivered_total", sink=sink.id)
        self._k_retries = key("headrace_sink_retries_total", sink=sink.id)
        self._k_healthy = key("headrace_sink_healthy", sink=sink.id)
        self._k_dropped = key("headrace_events_dropped_total", sink=sink.id)
        self._k_redelivered = key("headrace_buffer_redeliveries_total", sink=sink.id)
        # no Python transform in front and a sink that parses stored bodies itself: requests
        # are handed over as they are, with the dict path kept for what that sink declines
        self.columnar = self.transforms is None and callable(getattr(sink, "write_requests", None))
        self._conn: sqlite3.Connection | None = None
        self.buffer_problem: str | None = None
        """Why the buffer cannot be read right now (``/readyz``), or ``None``."""
        self.thread = threading.Thread(target=self.run, name=f"deliver-{sink.id}", daemon=True)

    def wants(self, item: ReadItem) -> bool:
        """Whether the stored request is for this sink."""
        request = item.request
        if request.source not in self.inputs:
            return False
        return request.sinks is None or self.sink.id in request.sinks

    def run(self) -> None:
        """Deliver until stopped; an unexpected error ends the thread (and so the process,
        which the supervisor restarts from the saved positions)."""
        try:
            if self.opener is not None and not self.opener():
                return
            self._run()
        except Exception:
            self.metrics.set(self._k_healthy, 0)
            log.exception("delivery to %s failed", self.sink.id)
        finally:
            if self.reader is not None:
                try:
                    self.reader.close()
                except Exception as exc:  # closing: what it held is released with the process
                    log.debug("sink %s: closing its reader: %s", self.sink.id, exc)

    def _open_reader(self) -> BufferReader | None:
        """The sink's reader, retried while the buffer cannot be reached (``None``: stopped)."""
        assert self._conn is not None
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            try:
                reader = self.buffer.reader(self.sink.id, self._conn, sorted(self.inputs))
            except BufferUnavailable as exc:
                self._unavailable(exc, attempt)
                continue
            self.buffer_problem = None
            return reader
        return None

    def _unavailable(self, exc: BufferUnavailable, attempt: int) -> None:
        """The buffer cannot be read now: say why (``/readyz``) and wait before trying again."""
        self.buffer_problem = f"buffer: {exc}"
        self.metrics.set(self._k_healthy, 0)
        delay = BUFFER_RETRY.delay(attempt)
        log.warning("sink %s: cannot read the buffer (%s); trying again in %.1fs",
                    self.sink.id, exc, delay)  # fmt: skip
        self.stop.wait(delay)

    def _run(self) -> None:
        self._conn = state.connect(self.state_path)
        reader = self.reader = self._open_reader()
        if reader is None:
            return
        self.metrics.set(self._k_healthy, 1)
        batch = _Batch(reader.acknowledgement())
        settings = self.batch_settings
        failures = 0
        while True:
            stopping = self.stop.is_set()
            got_any = False
            if not stopping and batch.count < settings.max_events:
                try:
                    polled = reader.poll(
                        max(settings.max_bytes - batch.bytes, 1),
                        settings.max_events - batch.count,
                    )
                except BufferUnavailable as exc:  # the batch in hand stays in hand
                    failures += 1
                    self._unavailable(exc, failures)
                    continue
                if failures:
                    failures, self.buffer_problem = 0, None
                    self.metrics.set(self._k_healthy, 1)
                got_any = polled.advanced
                batch.ack.include(polled.progress)
                self._add(batch, polled.items)
            now = time.monotonic()
            full = batch.count >= settings.max_events or batch.bytes >= settings.max_bytes
            aged = batch.started is not None and now - batch.started >= settings.max_age
            if not batch.empty() and (full or aged or stopping or not batch.count):
                if not self._deliver(batch):
                    return  # stopped while the sink was failing: the batch stays buffered
                batch = _Batch(reader.acknowledgement())
            if stopping:
                return
            if not got_any:
                self.stop.wait(POLL_INTERVAL)

    def _add(self, batch: _Batch, items: list[ReadItem]) -> None:
        for item in items:
            if item.deliveries > 1:
                self.metrics.add(self._k_redelivered)
            if not self.wants(item):
                continue
            batch.bytes += item.size
            if batch.started is None:
                batch.started = time.monotonic()
            if item.final:
                batch.undecodable.extend(_given_up(item))
                continue
            batch.count += item.request.count
            if self.columnar:
                batch.requests.append(item)
            else:
                batch.add(item)

    def _deliver(self, batch: _Batch) -> bool:
        """Hand ``batch`` to the sink, retrying; ``False`` if stopped before it succeeded."""
        assert self._conn is not None
        attempt = 0
        while True:
            attempt += 1
            checkpoint = self._checkpoint(batch, attempt)
            try:
                if batch.requests:
                    refused = self._write_requests(batch, checkpoint)
                    if refused is not None:
                        self._delivered(batch, [*batch.undecodable, *batch.refused, *refused])
                        return True
                    checkpoint = self._checkpoint(batch, attempt)  # with what did not decode
                if self.transforms is not None and not batch.transformed:
                    self._transform(batch)
                    checkpoint = self._checkpoint(batch, attempt)
                failed: list[FailedRecord] = []
                # a sink that files what the transforms failed (s3's processing-failed output)
                # is handed a batch of nothing else too
                writes = bool(batch.events) or (
                    getattr(self.sink, "keeps_processing_failures", False)
                    and any(f.processing is not None for f in batch.refused)
                )
                if writes:
                    failed = batch.as_received(self.sink.write(batch.events, checkpoint).failed)
                if not (writes and self.sink.commits_checkpoint):
                    self._save(checkpoint, failed)
                self._delivered(batch, [*batch.undecodable, *batch.refused, *failed])
                return True
            except TerminalSinkError as exc:
                batch.expand()
                log.error("sink %s refused a batch of %d: %s", self.sink.id, len(batch.events), exc)
                dead = batch.as_received(
                    [FailedRecord(e, exc.reason, str(exc)) for e in batch.events]
                )
                checkpoint.on_apply = []  # nothing was delivered: no transform remembers it
                self._save(checkpoint, dead)
                self._delivered(batch, [*batch.undecodable, *batch.refused, *dead])
                return True
            except Exception as exc:
                transient = is_transient(exc)
                if not transient:
                    log.exception("sink %s: unexpected error, will retry", self.sink.id)
                self.metrics.add(self._k_retries)
                self.metrics.set(self._k_healthy, 0)
                if self.retry.exhausted(attempt):
                    batch.expand()
                    reason = "retries_exhausted"
                    dead = batch.as_received(
                        [FailedRecord(e, reason, str(exc)) for e in batch.events]
                    )
                    checkpoint.on_apply = []
                    self._save(checkpoint, dead)
                    self._delivered(batch, [*batch.undecodable, *batch.refused, *dead])
                    return True
                delay = self.retry.delay(attempt)
                log.warning(
                    "sink %s: attempt %d failed (%s); retrying in %.2fs",
                    self.sink.id,
                    attempt,
                    exc,
                    delay,
                )
                if self.stop.wait(delay):
                    return False

    def _write_requests(
        self, batch: _Batch, checkpoint: state.Checkpoint
    ) -> list[FailedRecord] | None:
        """Hand the batch's stored requests to the sink as they are: what it refused, or
        ``None`` if it declined the batch (its requests are then decoded for ``write``)."""
        write_requests = self.sink.write_requests  # type: ignore[attr-defined]
        result = write_requests([item.request for item in batch.requests], checkpoint)
        if result is None:
            batch.expand()
            return None
        if not self.sink.commits_checkpoint:
            self._save(checkpoint, result.failed)
        return list(result.failed)

    def _checkpoint(self, batch: _Batch, attempt: int) -> state.Checkpoint:
        dead = [*batch.undecodable, *batch.refused]
        return state.Checkpoint(self.sink.id, batch.ack, attempt, dead, list(batch.hooks))

    def _transform(self, batch: _Batch) -> None:
        """Run the sink's transforms once per batch (a retried write reuses their output)."""
        assert self.transforms is not None
        batch.originals = {event.id: event for event in batch.events}
        result = self.transforms.apply(batch.events)
        batch.events = result.events
        batch.refused = result.failed
        batch.hooks = result.on_commit
        batch.transformed = True
        if result.dropped:
            self.metrics.add(self._k_dropped, result.dropped)
        for tid, transform in self.transforms.transforms.items():
            counters = getattr(transform, "counters", None)  # optional: see headrace.transforms
            if counters is not None:
                for name, value in counters().items():
                    self.metrics.set(
                        key(f"headrace_{name}_total", sink=self.sink.id, transform=tid), value
                    )

    def _save(self, checkpoint: state.Checkpoint, failed: list[FailedRecord]) -> None:
        assert self._conn is not None
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            checkpoint.apply(self._conn, failed)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _delivered(self, batch: _Batch, failed: list[FailedRecord]) -> None:
        batch.ack.settle()
        in_hand = len(batch.events) + sum(item.request.count for item in batch.requests)
        self.metrics.add(
            self._k_delivered,
            in_hand - len(failed) + len(batch.undecodable) + len(batch.refused),
        )
        for record in failed:
            self.metrics.add(
                key("headrace_events_failed_total", sink=self.sink.id, reason=record.reason)
            )
        self.metrics.set(self._k_healthy, 1)

    def observe(self) -> None:
        """Update the backlog gauges (called from the upkeep thread)."""
        if self.reader is None:
            return
        backlog = self.reader.backlog()
        self.metrics.set(key("headrace_sink_backlog_bytes", sink=self.sink.id), backlog.bytes)
        oldest = backlog.oldest_received_at_us
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1_000_000)
        self.metrics.set(
            key("headrace_sink_oldest_undelivered_age_seconds", sink=self.sink.id), age
        )


def _given_up(item: ReadItem) -> list[FailedRecord]:
    """The events of a request the buffer delivered as many times as it allows (workers died
    on it): dead letters, so the rest of the stream goes on."""
    why = (
        f"delivered {item.deliveries} times without being acknowledged (a worker died or timed "
        f"out on it each time); stored at {item.where}"
    )
    try:
        events = expand_events(item.request)
    except (msgspec.DecodeError, ValueError):
        request = item.request
        body = {"_raw": request.body.decode("utf-8", "replace")}
        events = [Event(item.where, request.stream, request.source, request.received_at_us, body)]
    return [FailedRecord(e, "redelivered_too_often", why) for e in events]
