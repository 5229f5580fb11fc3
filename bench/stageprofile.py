"""What the benchmarks' ``--profile`` shares: the stage clocks' totals, their differences between
two reads, and the table of CPU µs per request and per event for each stage.

Method: the clocks are ``headrace.telemetry.stageclock``'s (its docstring says what each
measures): a stage's CPU is the calling thread's CPU clock around each call of the functions
that make it up; what no stage covers is a thread's whole CPU clock minus its stages, shown as
its own row, so the rows add up to the total CPU the processes used. Waits (the fsync a request
waits for) are wall time and shown apart: they cost no CPU. Each wrapped call costs its clock
reads (``clock_cost_ns`` measures them); about half of that lands in the stage it wraps.

Run alone, it merges what several runs wrote with ``--profile-out`` into one table of min-max
per row (the benchmarks are run three times; give the range)::

    .venv/bin/python bench/stageprofile.py /tmp/p1.json /tmp/p2.json /tmp/p3.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headrace.telemetry import stageclock


@dataclass
class Clocks:
    """Stage and thread totals (of one process, or summed over several)."""

    stages: dict[str, list[int]] = field(default_factory=dict)  # stage: [calls, CPU ns, wall ns]
    threads: dict[str, int] = field(default_factory=dict)  # thread name: CPU ns
    process_cpu_ns: int = 0

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Clocks:
        """From one ``stageclock.snapshot()`` document."""
        stages = {
            name: [s["calls"], s["cpu_ns"], s["wall_ns"]] for name, s in doc["stages"].items()
        }
        return cls(stages, dict(doc["threads"]), int(doc["process_cpu_ns"]))

    def plus(self, other: Clocks, sign: int = 1) -> Clocks:
        stages = {k: list(v) for k, v in self.stages.items()}
        for name, values in other.stages.items():
            mine = stages.setdefault(name, [0, 0, 0])
            for i, value in enumerate(values):
                mine[i] += sign * value
        threads = dict(self.threads)
        for name, ns in other.threads.items():
            threads[name] = threads.get(name, 0) + sign * ns
        return Clocks(stages, threads, self.process_cpu_ns + sign * other.process_cpu_ns)

    def since(self, earlier: Clocks) -> Clocks:
        """What was added between ``earlier`` and these totals."""
        return self.plus(earlier, -1)

    def cpu(self, stage: str) -> int:
        return self.stages.get(stage, [0, 0, 0])[1]

    def wall(self, stage: str) -> int:
        return self.stages.get(stage, [0, 0, 0])[2]

    def calls(self, stage: str) -> int:
        return self.stages.get(stage, [0, 0, 0])[0]


def read_clocks(directory: Path) -> dict[int, Clocks]:
    """The totals each process last wrote to ``directory`` (``HEADRACE_STAGE_CLOCK``), by pid."""
    out: dict[int, Clocks] = {}
    for path in sorted(directory.glob("stageclock-*.json")):
        doc = json.loads(path.read_text())  # written whole, by rename
        out[int(doc["pid"])] = Clocks.of(doc)
    return out


def summed(clocks: dict[int, Clocks], pids: set[int] | None = None) -> Clocks:
    """The totals of the processes ``pids`` (all of them for ``None``), added up; a process
    that is not there counts as zero, so a difference covers processes that started late."""
    total = Clocks()
    for pid, c in clocks.items():
        if pids is None or pid in pids:
            total = total.plus(c)
    return total


def clock_cost_ns(calls: int = 200_000) -> float:
    """CPU ns a ``stageclock.clocked`` wrapper adds to one call, measured here and now."""

    def nothing() -> None:
        return None

    wrapped = stageclock.clocked("bench: calibration", nothing)
    start = time.thread_time_ns()
    for _ in range(calls):
        nothing()
    bare = time.thread_time_ns() - start
    start = time.thread_time_ns()
    for _ in range(calls):
        wrapped()
    return max(0.0, (time.thread_time_ns() - start - bare) / calls)


@dataclass
class Profile:
    """One scenario's table: CPU rows that add up to ``total_ns``, and waits beside them."""

    title: str
    requests: int
    events: int
    rows: list[tuple[str, int, int]] = field(default_factory=list)  # stage, calls, CPU ns
    waits: list[tuple[str, float, str]] = field(default_factory=list)  # what, value, unit
    notes: list[str] = field(default_factory=list)

    def add(self, stage: str, cpu_ns: int, calls: int = 0) -> None:
        self.rows.append((stage, calls, cpu_ns))

    @property
    def total_ns(self) -> int:
        return sum(ns for _, _, ns in self.rows)

    def as_dict(self) -> dict[str, Any]:
        total = self.total_ns or 1
        return {
            "title": self.title,
            "requests": self.requests,
            "events": self.events,
            "rows": {
                stage: {
                    "calls_per_request": calls / max(self.requests, 1),
                    "us_per_request": ns / 1e3 / max(self.requests, 1),
                    "us_per_event": ns / 1e3 / max(self.events, 1),
                    "share": ns / total,
                }
                for stage, calls, ns in self.rows
            },
            "waits": {what: {"value": value, "unit": unit} for what, value, unit in self.waits},
            "total": {
                "us_per_request": total / 1e3 / max(self.requests, 1),
                "us_per_event": total / 1e3 / max(self.events, 1),
            },
        }

    def print(self) -> None:
        print(f"\n== profile: {self.title} ==")
        print(f"{self.requests:,} requests, {self.events:,} events")
        print_rows(self.as_dict())
        for note in self.notes:
            print(f"  {note}")


def _fmt(low: float, high: float, spec: str) -> str:
    a, b = format(low, spec), format(high, spec)
    return a if a == b else f"{a}-{b}"


def print_rows(doc: dict[str, Any], high: dict[str, Any] | None = None) -> None:
    """The table of ``doc`` (``Profile.as_dict``); with ``high``, ``doc`` holds the minima and
    ``high`` the maxima of several runs."""
    high = high or doc
    head = f"{'stage':<52} {'calls/req':>10} {'CPU µs/req':>12} {'CPU µs/event':>13} {'share':>11}"
    print(head)
    print("-" * len(head))
    for stage, low in doc["rows"].items():
        top = high["rows"][stage]
        print(
            f"{stage:<52} {_fmt(low['calls_per_request'], top['calls_per_request'], '.2f'):>10}"
            f" {_fmt(low['us_per_request'], top['us_per_request'], '.2f'):>12}"
            f" {_fmt(low['us_per_event'], top['us_per_event'], '.3f'):>13}"
            f" {_fmt(100 * low['share'], 100 * top['share'], '.1f') + '%':>11}"
        )
    print("-" * len(head))
    low, top = doc["total"], high["total"]
    print(
        f"{'total (the CPU of the threads measured)':<52} {'':>10}"
        f" {_fmt(low['us_per_request'], top['us_per_request'], '.2f'):>12}"
        f" {_fmt(low['us_per_event'], top['us_per_event'], '.3f'):>13} {'100%':>11}"
    )
    for what, low in doc["waits"].items():
        top = high["waits"][what]
        unit = f" {low['unit']}" if low["unit"] else ""
        print(f"  wait: {what}: {_fmt(low['value'], top['value'], '.1f')}{unit}")


def merge(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The minima and maxima, row by row, of several runs' ``Profile.as_dict``."""
    totals = [d["total"] for d in docs]
    low: dict[str, Any] = {"rows": {}, "waits": {}, "total": {}}
    high: dict[str, Any] = {"rows": {}, "waits": {}, "total": {}}
    for k in totals[0]:
        low["total"][k] = min(t[k] for t in totals)
        high["total"][k] = max(t[k] for t in totals)
    for part in ("rows", "waits"):
        names = list(dict.fromkeys(name for d in docs for name in d[part]))
        for name in names:
            values = [d[part][name] for d in docs if name in d[part]]
            low[part][name] = {k: min(v[k] for v in values) for k in values[0] if k != "unit"}
            high[part][name] = {k: max(v[k] for v in values) for k in values[0] if k != "unit"}
            if part == "waits":
                low[part][name]["unit"] = high[part][name]["unit"] = values[0]["unit"]
    return low, high


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Merge --profile-out files of several benchmark runs into min-max tables."
    )
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.files]  # each: a list of profiles
    titles = list(dict.fromkeys(p["title"] for run in runs for p in run["profiles"]))
    for extra in dict.fromkeys(k for run in runs for k in run.get("figures", {})):
        values = [run["figures"][extra] for run in runs if extra in run.get("figures", {})]
        print(f"{extra}: {_fmt(min(values), max(values), ',.2f')}")
    for title in titles:
        docs = [p for run in runs for p in run["profiles"] if p["title"] == title]
        print(f"\n== profile: {title} ({len(docs)} runs, min-max) ==")
        low, high = merge(docs)
        print_rows(low, high)
    return 0


if __name__ == "__main__":
    sys.exit(main())
