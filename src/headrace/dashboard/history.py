"""The server's recent counters, for the dashboard's per-sink and per-source rate charts.

The supervisor of ``headrace serve`` samples the merged metrics every ``INTERVAL`` seconds and
keeps the last hour of samples in ``<data>/run/history.json``, and one sample a minute for the
last day in ``<data>/history/minutes.json`` (outside ``run/``, which each start empties, so a
restart keeps the day). Both are rewritten atomically. A rate is the difference of two samples
over their time; a counter that went down (a process restarted and its count began again)
counts from zero, so a restart shows no negative rate.

    {"samples": [[t_seconds, {"<metric>|<label>=<value>,...": value, ...}], ...]}
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from headrace.telemetry import metrics as m

INTERVAL = 10.0
KEEP = 361  # an hour of 10 s steps, plus the sample the first step starts from
KEPT_METRICS = frozenset(
    {
        "headrace_events_accepted_total",
        "headrace_requests_rejected_total",
        "headrace_events_delivered_total",
        "headrace_events_failed_total",
        "headrace_sink_retries_total",
    }
)
FILE_NAME = "history.json"
MINUTE_FILE = Path("history") / "minutes.json"  # relative to the data dir
KEEP_MINUTES = 24 * 60 + 1

Sample = tuple[float, dict[str, float]]


def series_key(name: str, labels: m.Labels) -> str:
    """A metric and its labels as one string key."""
    return name + "|" + ",".join(f"{k}={v}" for k, v in labels)


def split_key(text: str) -> tuple[str, dict[str, str]]:
    """The metric name and labels of a key made by ``series_key``."""
    name, _, rest = text.partition("|")
    labels = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
    return name, labels


class HistoryRecorder:
    """Samples the merged counters on a thread until ``stop()``."""

    def __init__(self, run_dir: Path, interval: float = INTERVAL, keep: int = KEEP) -> None:
        self.run_dir = run_dir
        self.interval = interval
        self.samples: list[Sample] = []
        self.keep = keep
        self.minute_path = run_dir.parent / MINUTE_FILE
        self.minutes = _read(self.minute_path)  # the day before this start, if any
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headrace-history", daemon=True)

    def start(self) -> HistoryRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self, now: float | None = None) -> None:
        """Take one sample and publish the history."""
        values = m.collect(self.run_dir)
        kept = {series_key(n, labels): v for (n, labels), v in values.items() if n in KEPT_METRICS}
        moment = time.time() if now is None else now
        self.samples.append((moment, kept))
        del self.samples[: -self.keep]
        _write(self.run_dir / FILE_NAME, self.samples)
        if not self.minutes or moment - self.minutes[-1][0] >= 60:
            self.minutes.append((moment, kept))
            del self.minutes[:-KEEP_MINUTES]
            _write(self.minute_path, self.minutes)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.sample()
            if self._stop.wait(self.interval):
                return


def _write(path: Path, samples: list[Sample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(msgspec.json.encode({"samples": samples}))
    os.replace(tmp, path)


def _read(path: Path) -> list[Sample]:
    try:
        raw: dict[str, Any] = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return []
    return [(float(t), dict(values)) for t, values in raw.get("samples", [])]


def read_history(run_dir: Path, since: float | None = None) -> list[Sample]:
    """The published samples, oldest first (none if the server has not published any): the
    last hour's, and with ``since`` (seconds) before that hour, the minute samples back to it."""
    samples = _read(run_dir / FILE_NAME)
    if since is None:
        return samples
    first = samples[0][0] if samples else float("inf")
    older = [s for s in _read(run_dir.parent / MINUTE_FILE) if since <= s[0] < first]
    return older + [s for s in samples if s[0] >= since]


def rates(samples: list[Sample], metric: str, label: str) -> dict[str, list[list[float]]]:
    """Per value of ``label``: ``[[t, per-second rate], ...]`` of ``metric`` between samples."""
    out: dict[str, list[list[float]]] = {}
    for (t0, before), (t1, after) in itertools.pairwise(samples):
        span = t1 - t0
        if span <= 0:
            continue
        totals: dict[str, float] = {}
        for key, value in after.items():
            name, labels = split_key(key)
            if name != metric or label not in labels:
                continue
            previous = before.get(key, 0.0)
            delta = value - previous if value >= previous else value  # restarted: from zero
            group = labels[label]
            totals[group] = totals.get(group, 0.0) + delta
        for group, delta in totals.items():
            out.setdefault(group, []).append([t1, delta / span])
    return out


def totals(samples: list[Sample], metric: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The latest value of ``metric`` summed per combination of ``labels``."""
    if not samples:
        return {}
    out: dict[tuple[str, ...], float] = {}
    for key, value in samples[-1][1].items():
        name, found = split_key(key)
        if name == metric:
            group = tuple(found.get(label, "") for label in labels)
            out[group] = out.get(group, 0.0) + value
    return out
