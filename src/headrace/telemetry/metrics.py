"""Metrics in the Prometheus text format, gathered from every headrace process.

Each process keeps a ``Registry`` and writes a snapshot of it to ``<data>/run/metrics-<name>.json``
about once a second; ``/metrics`` merges the snapshots (counters are summed, gauges take the
largest value) so whichever ingest worker answers, it reports the whole server.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]

METRICS: dict[str, tuple[str, str]] = {
    "headrace_requests_total": ("counter", "Ingest HTTP requests by source and status code."),
    "headrace_events_received_total": ("counter", "Events in requests that reached a source."),
    "headrace_events_accepted_total": (
        "counter",
        "Events committed to the buffer and acknowledged.",
    ),
    "headrace_requests_rejected_total": (
        "counter",
        "Ingest requests refused, by reason (nothing of them was stored).",
    ),
    "headrace_buffer_bytes": ("gauge", "Bytes held in the buffer's segment files."),
    "headrace_buffer_commits_total": ("counter", "Group commits (one fsync each) to the buffer."),
    "headrace_buffer_torn_tails_total": ("counter", "Torn segment tails found and cut off."),
    "headrace_buffer_corrupt_segments_total": ("counter", "Segments with unreadable frames."),
    "headrace_buffer_skipped_frames_total": (
        "counter",
        "Damaged buffer frames skipped (their bytes kept in the quarantine folder).",
    ),
    "headrace_buffer_quarantined_bytes_total": (
        "counter",
        "Bytes of damaged buffer frames copied to the quarantine folder.",
    ),
    "headrace_sink_backlog_bytes": ("gauge", "Buffered bytes a sink has not delivered yet."),
    "headrace_sink_oldest_undelivered_age_seconds": (
        "gauge",
        "Age of the oldest event a sink has not delivered yet.",
    ),
    "headrace_events_delivered_total": ("counter", "Events stored by a sink."),
    "headrace_events_failed_total": ("counter", "Events sent to the dead-letter store, by reason."),
    "headrace_sink_retries_total": ("counter", "Batch attempts that failed and were retried."),
    "headrace_sink_healthy": ("gauge", "1 when the sink's last write succeeded, else 0."),
    "headrace_lake_compactions_total": ("counter", "Lake partitions compacted."),
    "headrace_loads_total": ("counter", "Bulk load jobs ended, by source and status."),
    "headrace_load_rows_total": ("counter", "Rows bulk loads put into warehouse tables."),
    "headrace_events_dropped_total": ("counter", "Events a transform dropped on purpose."),
    "headrace_enrich_lookups_total": ("counter", "Events an enrich_http transform looked up."),
    "headrace_enrich_cache_hits_total": (
        "counter",
        "Lookups answered from the cache (or by the same lookup earlier in the batch).",
    ),
    "headrace_enrich_requests_total": (
        "counter",
        "HTTP requests made by enrich_http, retries included.",
    ),
    "headrace_enrich_failures_total": ("counter", "Events whose lookup failed."),
    "headrace_enrich_remembered_failures_total": (
        "counter",
        "Lookups failed at once because their key failed within failure_ttl.",
    ),
    "headrace_enrich_fast_fails_total": (
        "counter",
        "Lookups refused without a request because the circuit was open.",
    ),
    "headrace_enrich_circuit_opens_total": (
        "counter",
        "Times enrich_http's circuit opened on evidence of an outage.",
    ),
    "headrace_http_connections": ("gauge", "Open HTTP connections of the busiest ingest worker."),
    "headrace_http_connections_refused_total": (
        "counter",
        "HTTP connections closed at once because the worker had max_connections open.",
    ),
    "headrace_http_timeouts_total": (
        "counter",
        "HTTP connections closed for being too slow, by phase (head, body, idle).",
    ),
    "headrace_http_header_limit_total": (
        "counter",
        "Requests answered 431 or 414 for their request line or headers, by limit.",
    ),
    "headrace_authorizer_timeouts_total": (
        "counter",
        "Requests refused with 503 because a python authorizer passed its deadline.",
    ),
}


def key(name: str, **labels: str) -> Key:
    """The registry key of a metric with labels (build it once, outside hot paths)."""
    return name, tuple(sorted(labels.items()))


class Registry:
    """A process's metric values."""

    def __init__(self) -> None:
        self.values: dict[Key, float] = {}

    def add(self, metric: Key, amount: float = 1) -> None:
        """Increase a counter."""
        self.values[metric] = self.values.get(metric, 0) + amount

    def set(self, metric: Key, value: float) -> None:
        """Set a gauge."""
        self.values[metric] = value

    def snapshot(self) -> list[tuple[str, Labels, float]]:
        """The values as a list that encodes to JSON."""
        return [(name, labels, value) for (name, labels), value in self.values.items()]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[tuple[str, list[tuple[str, str]], float]])


def write_snapshot(run_dir: Path, process: str, registry: Registry) -> None:
    """Publish ``registry`` for the other processes (atomic replace)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".metrics-{process}.{os.getpid()}.tmp"
    tmp.write_bytes(_encoder.encode(registry.snapshot()))
    os.replace(tmp, run_dir / f"metrics-{process}.json")


def collect(run_dir: Path, own: tuple[str, Registry] | None = None) -> dict[Key, float]:
    """Every process's values merged; ``own`` (name, registry) is taken live, not from disk."""
    merged: dict[Key, float] = {}
    snapshots: list[list[tuple[str, Labels, float]]] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(run_dir):
            if not (entry.name.startswith("metrics-") and entry.name.endswith(".json")):
                continue
            if own is not None and entry.name == f"metrics-{own[0]}.json":
                continue
            with contextlib.suppress(OSError, msgspec.DecodeError):
                raw = _decoder.decode(Path(entry.path).read_bytes())
                snapshots.append([(n, tuple(tuple(p) for p in lb), v) for n, lb, v in raw])  # type: ignore[misc]
    if own is not None:
        snapshots.append(own[1].snapshot())
    for snapshot in snapshots:
        for name, labels, value in snapshot:
            metric = (name, labels)
            kind = METRICS.get(name, ("gauge", ""))[0]
            if kind == "counter":
                merged[metric] = merged.get(metric, 0) + value
            else:
                merged[metric] = max(merged.get(metric, value), value)
    return merged


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(values: dict[Key, float]) -> str:
    """The Prometheus text exposition of ``values``."""
    by_name: dict[str, list[tuple[Labels, float]]] = {}
    for (name, labels), value in values.items():
        by_name.setdefault(name, []).append((labels, value))
    lines = []
    for name in sorted(set(by_name) | set(METRICS)):
        kind, help_text = METRICS.get(name, ("gauge", ""))
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in sorted(by_name.get(name, [])):
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            number = int(value) if float(value).is_integer() else value
            lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    return "\n".join(lines) + "\n"
