"""The body of the delivery process: sinks, their workers, and upkeep."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

import msgspec

from headrace.config.models import Pipeline
from headrace.runtime import state
from headrace.runtime.delivery import DeliveryWorker, recover_segments, remove_expired_segments
from headrace.sinks import Sink, build_sink
from headrace.sinks.lake_catalog import LAKE_SCHEMA
from headrace.telemetry import metrics as m

log = logging.getLogger("headrace.delivery")
RECOVER_EVERY = 5.0
RETENTION_EVERY = 5.0


def _open_sinks(
    pipeline: Pipeline, data_dir: Path, stop: threading.Event
) -> dict[str, Sink] | None:
    sinks: dict[str, Sink] = {}
    for sink_id, config in pipeline.sinks.items():
        sink = build_sink(sink_id, config, data_dir)
        delay = 0.5
        while True:
            try:
                sink.open()
                break
            except Exception as exc:
                log.error("sink %s cannot open (%s); retrying in %.1fs", sink_id, exc, delay)
                if stop.wait(delay):
                    return None
                delay = min(delay * 2, 30.0)
        sinks[sink_id] = sink
    return sinks


def _maintain_loop(sinks: dict[str, Sink], stop: threading.Event, metrics: m.Registry) -> None:
    while not stop.wait(1.0):
        for sink_id, sink in sinks.items():
            try:
                sink.maintain()
            except Exception:
                log.exception("sink %s: background work failed", sink_id)
            compactions = getattr(sink, "compactions", None)
            if compactions is not None:
                metrics.set(m.key("headrace_lake_compactions_total", sink=sink_id), compactions)


def run_delivery(pipeline: Pipeline, data_dir: Path, stop: threading.Event) -> int:
    """Deliver until ``stop`` is set, then drain the batches in hand; returns the exit status
    (1 when a sink's worker died: the supervisor starts the process again)."""
    buffer_dir = data_dir / "buffer"
    buffer_dir.mkdir(parents=True, exist_ok=True)
    run_dir = data_dir / "run"
    state_path = data_dir / "state.db"
    conn = state.connect(state_path)
    state.init_schema(conn, [LAKE_SCHEMA])
    metrics = m.Registry()
    recover_segments(buffer_dir, metrics)
    sinks = _open_sinks(pipeline, data_dir, stop)
    if sinks is None:
        return 0
    workers = [
        DeliveryWorker(
            sink,
            pipeline.sinks[sink_id].inputs,
            batch=pipeline.sinks[sink_id].batch,
            retry=pipeline.sinks[sink_id].retry,
            buffer_dir=buffer_dir,
            state_path=state_path,
            metrics=metrics,
            stop=stop,
        )
        for sink_id, sink in sinks.items()
    ]
    for worker in workers:
        worker.thread.start()
    upkeep = threading.Thread(target=_maintain_loop, args=(sinks, stop, metrics), daemon=True)
    upkeep.start()
    last_recover = last_retention = 0.0
    status = 0
    try:
        while not stop.wait(1.0):
            dead = [w.sink.id for w in workers if not w.thread.is_alive()]
            if dead:
                log.critical("delivery to %s stopped on an error; restarting delivery", dead)
                status = 1
                stop.set()
                break
            now = time.monotonic()
            try:
                if now - last_recover >= RECOVER_EVERY:
                    last_recover = now
                    recover_segments(buffer_dir, metrics)
                if now - last_retention >= RETENTION_EVERY:
                    last_retention = now
                    removed = remove_expired_segments(
                        buffer_dir,
                        conn,
                        list(sinks),
                        pipeline.buffer.retention,
                        pipeline.buffer.max_bytes,
                    )
                    if removed:
                        log.info("retention removed %d delivered segment(s)", len(removed))
                for worker in workers:
                    worker.observe()
                corrupt = sum(w.reader.corrupt_segments for w in workers if w.reader is not None)
                metrics.set(m.key("headrace_buffer_corrupt_segments_total"), corrupt)
                _publish(run_dir, sinks, metrics)
            except Exception:
                log.exception("delivery upkeep failed")
    finally:
        for worker in workers:
            worker.thread.join()
        upkeep.join(timeout=30)
        for sink in sinks.values():
            with contextlib.suppress(Exception):
                sink.close()
        with contextlib.suppress(OSError):
            m.write_snapshot(run_dir, "delivery", metrics)
            (run_dir / "delivery.json").unlink()
        conn.close()
    return status


def _publish(run_dir: Path, sinks: dict[str, Sink], metrics: m.Registry) -> None:
    unhealthy = {}
    for sink_id, sink in sinks.items():
        reason = sink.health()
        if reason:
            unhealthy[sink_id] = reason
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".delivery.json.tmp"
    tmp.write_bytes(msgspec.json.encode({"updated_at": time.time(), "unhealthy": unhealthy}))
    tmp.replace(run_dir / "delivery.json")
    m.write_snapshot(run_dir, "delivery", metrics)
