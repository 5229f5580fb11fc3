"""The body of the delivery process: sinks, their workers, and upkeep."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from headrace.buffer import Buffer, open_buffer
from headrace.config.graph import sources_of
from headrace.config.models import Pipeline
from headrace.retry import RetryPolicy
from headrace.runtime.delivery import DeliveryWorker
from headrace.sinks import build_sink
from headrace.sinks.base import RAW, Sink
from headrace.storage import state
from headrace.storage.lake_catalog import LAKE_SCHEMA
from headrace.telemetry import metrics as m
from headrace.transforms import TransformContext
from headrace.transforms.graph import SinkTransforms

log = logging.getLogger("headrace.delivery")
RECOVER_EVERY = 5.0
RETENTION_EVERY = 5.0
OPEN_RETRY = RetryPolicy(initial=0.5, maximum=30.0, jitter="half")
"""How often a sink that cannot open is tried again (until it opens or delivery stops)."""


class SinkOpener:
    """Opens one sink and its transforms, retrying with backoff until it works or delivery stops.

    Runs first thing in the sink's own worker thread: a sink that cannot open (its bucket or
    table is unreachable, its transform's Python function does not import) then delays only its
    own delivery, and ``problem`` says why for ``/readyz`` meanwhile."""

    def __init__(
        self, sink: Sink, transforms: SinkTransforms, data_dir: Path, stop: threading.Event
    ) -> None:
        self.sink = sink
        self.transforms = transforms
        self.data_dir = data_dir
        self.stop = stop
        self.opened = threading.Event()
        self.problem: str | None = "opening"

    def __call__(self) -> bool:
        """Open; ``False`` if delivery stopped first."""
        sink_id = self.sink.id
        attempt = 0
        while True:
            attempt += 1
            try:
                self.sink.open()
                try:
                    self.transforms.open(TransformContext(sink_id, self.data_dir / "state.db"))
                except BaseException:
                    self.sink.close()
                    raise
                break
            except Exception as exc:
                self.problem = f"cannot open: {exc}"
                delay = OPEN_RETRY.delay(attempt)
                log.error("sink %s cannot open (%s); retrying in %.1fs", sink_id, exc, delay)
                if self.stop.wait(delay):
                    return False
        self.problem = None
        self.opened.set()
        return True

    def close(self) -> None:
        """Close the sink and its transforms if they were opened."""
        if self.opened.is_set():
            with contextlib.suppress(Exception):
                self.sink.close()
            self.transforms.close()


def _maintain_loop(
    openers: dict[str, SinkOpener], stop: threading.Event, metrics: m.Registry
) -> None:
    while not stop.wait(1.0):
        for sink_id, opener in openers.items():
            if not opener.opened.is_set():
                continue
            sink = opener.sink
            try:
                sink.maintain()
            except Exception:
                log.exception("sink %s: background work failed", sink_id)
            compactions = getattr(sink, "compactions", None)
            if compactions is not None:
                metrics.set(m.key("headrace_lake_compactions_total", sink=sink_id), compactions)


class Joinable(Protocol):
    def join(self, timeout: float | None = None) -> None: ...


Background = Callable[[Pipeline, Path, threading.Event, m.Registry], Sequence[Joinable]]
"""Starts work that runs beside delivery in its process (the bulk-load workers), returning its
threads, which are joined at shutdown."""


def run_delivery(
    pipeline: Pipeline,
    data_dir: Path,
    stop: threading.Event,
    background: Background | None = None,
    *,
    sinks: Sequence[str] | None = None,
    name: str = "delivery",
) -> int:
    """Deliver to ``sinks`` (default: every sink) until ``stop`` is set, then drain the batches
    in hand; returns the exit status (1 when a sink's worker died: the supervisor starts the
    process again). Its status and metrics are published in ``<data>/run`` as ``name``."""
    buffer = open_buffer(pipeline.buffer, data_dir)
    run_dir = data_dir / "run"
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn, [LAKE_SCHEMA])
    metrics = m.Registry()
    _recover(buffer, metrics)
    chosen = list(pipeline.sinks) if sinks is None else list(sinks)
    openers = {sink_id: _opener(pipeline, sink_id, data_dir, stop) for sink_id in chosen}
    workers = [
        _worker(pipeline, opener, buffer, data_dir, metrics, stop) for opener in openers.values()
    ]
    for worker in workers:
        worker.thread.start()
    load_runners = background(pipeline, data_dir, stop, metrics) if background else []
    upkeep = threading.Thread(target=_maintain_loop, args=(openers, stop, metrics), daemon=True)
    upkeep.start()
    status = 0
    try:
        status = _watch(pipeline, buffer, conn, workers, openers, metrics, stop, (run_dir, name))
    finally:
        for worker in workers:
            worker.thread.join()
        for runner in load_runners:
            runner.join(timeout=60)
        upkeep.join(timeout=30)
        for opener in openers.values():
            opener.close()
        buffer.close()
        with contextlib.suppress(OSError):
            m.write_snapshot(run_dir, name, metrics)
            (run_dir / f"{name}.json").unlink()
        conn.close()
    return status


def _opener(pipeline: Pipeline, sink_id: str, data_dir: Path, stop: threading.Event) -> SinkOpener:
    sink = build_sink(sink_id, pipeline.sinks[sink_id], data_dir)
    transforms = SinkTransforms(pipeline, sink_id, takes_raw=RAW in sink.capabilities)
    return SinkOpener(sink, transforms, data_dir, stop)


def _worker(
    pipeline: Pipeline, opener: SinkOpener, buffer: Buffer, data_dir: Path,
    metrics: m.Registry, stop: threading.Event,
) -> DeliveryWorker:  # fmt: skip
    config = pipeline.sinks[opener.sink.id]
    return DeliveryWorker(
        opener.sink, sources_of(pipeline, opener.sink.id), batch=config.batch, retry=config.retry,
        buffer=buffer, state_path=data_dir / "state.db", metrics=metrics, stop=stop,
        transforms=opener.transforms, opener=opener,
    )  # fmt: skip


def _watch(
    pipeline: Pipeline, buffer: Buffer, conn: sqlite3.Connection, workers: list[DeliveryWorker],
    openers: dict[str, SinkOpener], metrics: m.Registry, stop: threading.Event,
    published: tuple[Path, str],
) -> int:  # fmt: skip
    """Watch the workers and do the upkeep until ``stop``; 1 when a worker died."""
    last_recover = last_retention = 0.0
    while not stop.wait(1.0):
        dead = [w.sink.id for w in workers if not w.thread.is_alive()]
        if dead:
            log.critical("delivery to %s stopped on an error; restarting delivery", dead)
            stop.set()
            return 1
        now = time.monotonic()
        try:
            if now - last_recover >= RECOVER_EVERY:
                last_recover = now
                _recover(buffer, metrics)
            if now - last_retention >= RETENTION_EVERY:
                last_retention = now
                # what every sink of the pipeline acknowledged, wherever it is delivered
                buffer.expire(conn, list(pipeline.sinks))
            for worker in workers:
                worker.observe()
            readers = [w.reader for w in workers if w.reader is not None]
            corrupt = sum(r.corrupt for r in readers)
            metrics.set(m.key("headrace_buffer_corrupt_segments_total"), corrupt)
            for name, figure in (
                ("headrace_buffer_skipped_frames_total", "skipped_frames"),
                ("headrace_buffer_quarantined_bytes_total", "quarantined_bytes"),
            ):  # the local buffer's readers count these; other buffers have none to skip
                metrics.set(m.key(name), sum(getattr(r, figure, 0) for r in readers))
            _publish(*published, openers, workers, metrics)
        except Exception:
            log.exception("delivery upkeep failed")
    return 0


def _recover(buffer: Buffer, metrics: m.Registry) -> None:
    """Make what writers that died left readable, counting torn tails."""
    torn = buffer.recover()
    if torn:
        metrics.add(m.key("headrace_buffer_torn_tails_total"), torn)


def _publish(
    run_dir: Path, name: str, openers: dict[str, SinkOpener], workers: list[DeliveryWorker],
    metrics: m.Registry,
) -> None:  # fmt: skip
    unhealthy = {}
    buffer_problems = {w.sink.id: w.buffer_problem for w in workers if w.buffer_problem}
    for sink_id, opener in openers.items():
        reason = opener.sink.health() if opener.opened.is_set() else opener.problem
        reason = reason or buffer_problems.get(sink_id)
        if reason:
            unhealthy[sink_id] = reason
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{name}.json.tmp"
    tmp.write_bytes(msgspec.json.encode({"updated_at": time.time(), "unhealthy": unhealthy}))
    tmp.replace(run_dir / f"{name}.json")
    m.write_snapshot(run_dir, name, metrics)
