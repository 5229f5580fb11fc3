"""What the dashboard's overview shows, gathered in one JSON document.

Sources: events accepted and requests refused by reason (live metrics) and their rates over the
range (the supervisor's history: the last hour in 10 s steps, the last day by the minute).
Sinks: delivered and failed events, retries, health, buffered backlog and the age of the oldest
undelivered event, dead letters by reason; with a nats buffer, each sink's JetStream consumer
(pending, unacknowledged and redelivered messages, across every machine delivering to it). Streams (per lake or PostgreSQL sink): stored events
and arrivals over the range (the last hour by default), by receive time. Bad rows by source and
reason. (Bulk-load jobs have their own view, over ``/v1/loads``.)
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.buffer.base import Buffer
from headrace.config.models import Pipeline
from headrace.dashboard import history as h
from headrace.dashboard.lake_stats import arrivals, open_lake, pick_bucket, stream_summaries
from headrace.errors import BufferUnavailable
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.postgres.config import PostgresConfig
from headrace.storage.state import connect
from headrace.telemetry import metrics as m

HOUR_US = 3_600_000_000


def _labelled(values: dict[m.Key, float], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for (metric, found), value in values.items():
        if metric == name:
            given = dict(found)
            group = tuple(given.get(label, "") for label in labels)
            out[group] = out.get(group, 0.0) + value
    return out


def _counts(path: Path, sql: str) -> list[tuple[str, str, int]]:
    """Grouped counts from a SQLite file, or none if it does not exist yet."""
    if not path.exists():
        return []
    conn = connect(path, readonly=True)
    try:
        return [(str(a), str(b), int(n)) for a, b, n in conn.execute(sql)]
    except sqlite3.OperationalError:
        return []  # the table is created on first use
    finally:
        conn.close()


def dead_letter_counts(data_dir: Path) -> list[tuple[str, str, int]]:
    """(sink, reason, count) of dead letters not yet replayed."""
    return _counts(
        data_dir / "state.db",
        "SELECT sink, reason, count(*) FROM dead_letters WHERE replayed_at_us IS NULL "
        "GROUP BY sink, reason ORDER BY sink, reason",
    )


def bad_row_counts(data_dir: Path) -> list[tuple[str, str, int]]:
    """(source, reason, count) of bad rows not yet replayed."""
    return _counts(
        data_dir / "badrows.db",
        "SELECT source, reason, count(*) FROM bad_rows WHERE replayed_at_us IS NULL "
        "GROUP BY source, reason ORDER BY source, reason",
    )


CHART_POINTS = 60  # a card's chart is small: about a point per 7 px


@dataclass(frozen=True)
class Window:
    """The overview's time range and the buckets its stream charts count in (µs): whole
    buckets from the one holding ``since`` (counting only from ``since``) to the one holding
    ``until``."""

    since_us: int
    until_us: int
    bucket_us: int

    @classmethod
    def of(cls, since_us: int, until_us: int) -> Window:
        bucket = pick_bucket(since_us, until_us, CHART_POINTS + 1)  # "now" is a µs past
        return cls(since_us, until_us, bucket)

    def times(self, count: int | None = None) -> list[int]:
        """Bucket starts in seconds (``count`` of them, else all)."""
        first = (self.since_us // self.bucket_us) * self.bucket_us
        starts = range(first, self.until_us, self.bucket_us)
        return [b // 1_000_000 for b in list(starts)[:count]]


def _stream_panels(pipeline: Pipeline, data_dir: Path, window: Window) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for sink_id, sink in pipeline.sinks.items():
        if isinstance(sink, PostgresConfig):
            panels.append(_postgres_panel(sink_id, sink, window))
        elif isinstance(sink, LakeConfig):
            panels += _lake_panels(sink_id, sink, data_dir, window)
    return panels


def _lake_panels(
    sink_id: str, sink: LakeConfig, data_dir: Path, window: Window
) -> list[dict[str, Any]]:
    """Each stream of a lake sink: stored events, files, bytes, arrivals over the window."""
    panels: list[dict[str, Any]] = []
    lake = open_lake(data_dir, sink_id, sink)
    if lake is None:
        return panels
    try:
        with contextlib.suppress(sqlite3.OperationalError):  # no lake tables yet
            for summary in stream_summaries(lake):
                counts = arrivals(
                    lake, summary["stream"], window.since_us, window.until_us, window.bucket_us
                )
                panels.append({"sink": sink_id, **summary, **_arrivals(window, counts)})
    finally:
        lake.close()
    return panels


def _arrivals(window: Window, counts: list[int]) -> dict[str, Any]:
    return {"bucket_seconds": window.bucket_us // 1_000_000, "times": window.times(len(counts)),
            "arrivals": counts, "received": sum(counts)}  # fmt: skip


def _postgres_panel(sink_id: str, sink: PostgresConfig, window: Window) -> dict[str, Any]:
    """A PostgreSQL sink's table as a stream panel: rows, size, arrivals over the window."""
    from headrace.query.lake import QueryError
    from headrace.query.pg_table import PgTable

    empty = [0] * len(window.times())
    panel: dict[str, Any] = {
        "sink": sink_id, "stream": sink.inputs[0], "table": f"{sink.schema_name}.{sink.table}",
        "events": None, "files": None, "bytes": None, "first_us": None, "last_us": None,
        **_arrivals(window, empty),
    }  # fmt: skip
    try:
        table = PgTable(sink)
    except QueryError as exc:
        return {**panel, "error": str(exc)}
    try:
        if table.exists:
            panel["events"] = table.estimated_rows()
            counts = table.arrivals(window.since_us, window.until_us, window.bucket_us)
            panel.update(_arrivals(window, counts))
            panel["bytes"] = table.size_bytes()
    except Exception as exc:  # a read that fails must not take the overview down
        panel["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        table.close()
    return panel


def _shared_delivery(buffer: Buffer | None, sinks: list[str]) -> dict[str, Any]:
    """What a buffer shared by many machines knows of delivery (``stream``, ``consumers``), a
    ``problem`` when it cannot say, nothing for a local buffer."""
    if buffer is None:
        return {}
    try:
        return buffer.delivery_state(sinks) or {}
    except BufferUnavailable as exc:
        return {"problem": str(exc)}


def overview(
    pipeline: Pipeline,
    data_dir: Path,
    own: tuple[str, m.Registry] | None,
    *,
    since_us: int | None = None,
    until_us: int | None = None,
    buffer: Buffer | None = None,
) -> dict[str, Any]:
    """The overview document (see the module docstring) over ``[since, until)``, the last hour
    by default; with a ``buffer`` shared by many machines, what it knows of each sink's
    delivery too."""
    now_us = time.time_ns() // 1000
    until = until_us if until_us is not None else now_us
    window = Window.of(since_us if since_us is not None else until - HOUR_US, until)
    run_dir = data_dir / "run"
    values = m.collect(run_dir, own)
    samples = [
        s for s in h.read_history(run_dir, window.since_us / 1e6) if s[0] * 1e6 < window.until_us
    ]
    accepted = _labelled(values, "headrace_events_accepted_total", "source")
    requests = _labelled(values, "headrace_requests_total", "source", "status")
    rejected = _labelled(values, "headrace_requests_rejected_total", "source", "reason")
    accepted_rates = h.rates(samples, "headrace_events_accepted_total", "source")
    sources = []
    for source_id in pipeline.sources:
        sources.append(
            {
                "id": source_id,
                "accepted_events": accepted.get((source_id,), 0),
                "requests": {s: v for (src, s), v in requests.items() if src == source_id},
                "rejected": {r: v for (src, r), v in rejected.items() if src == source_id},
                "rate": accepted_rates.get(source_id, []),
                "sinks": pipeline.sinks_for_source(source_id),
            }
        )
    delivered = _labelled(values, "headrace_events_delivered_total", "sink")
    failed = _labelled(values, "headrace_events_failed_total", "sink", "reason")
    retries = _labelled(values, "headrace_sink_retries_total", "sink")
    healthy = _labelled(values, "headrace_sink_healthy", "sink")
    backlog = _labelled(values, "headrace_sink_backlog_bytes", "sink")
    oldest = _labelled(values, "headrace_sink_oldest_undelivered_age_seconds", "sink")
    delivered_rates = h.rates(samples, "headrace_events_delivered_total", "sink")
    dead = dead_letter_counts(data_dir)
    sinks = []
    for sink_id, sink in pipeline.sinks.items():
        sinks.append(
            {
                "id": sink_id,
                "type": sink.type,
                "inputs": list(sink.inputs),
                "delivered_events": delivered.get((sink_id,), 0),
                "failed_events": {r: v for (s, r), v in failed.items() if s == sink_id},
                "retries": retries.get((sink_id,), 0),
                "healthy": healthy.get((sink_id,)),
                "backlog_bytes": backlog.get((sink_id,)),
                "oldest_undelivered_seconds": oldest.get((sink_id,)),
                "dead_letters": {r: n for s, r, n in dead if s == sink_id},
                "rate": delivered_rates.get(sink_id, []),
            }
        )
    shared = _shared_delivery(buffer, list(pipeline.sinks))
    for panel in sinks:
        panel["consumer"] = (shared.get("consumers") or {}).get(panel["id"])
    bad = bad_row_counts(data_dir)
    return {
        "generated_at": now_us // 1000,
        "since_us": window.since_us,
        "until_us": window.until_us,
        "sources": sources,
        "sinks": sinks,
        "streams": _stream_panels(pipeline, data_dir, window),
        "bad_rows": [{"source": s, "reason": r, "count": n} for s, r, n in bad],
        "buffer": {"type": pipeline.buffer.type, **shared},
        "history_seconds": (samples[-1][0] - samples[0][0]) if len(samples) > 1 else 0,
        "history_from": samples[0][0] if samples else None,
    }
