"""A benchmark's profile hook: the CPU each stage of a hot path costs, per process.

With ``HEADRACE_STAGE_CLOCK=<dir>`` in the environment when headrace starts, the ingest path
wraps its stages in clocks once, when it is built (``ingest/pipeline.py``, the local buffer's
``writer.py``), and every process that clocks something writes its totals to
``<dir>/stageclock-<pid>.json`` every ``DUMP_SECONDS`` and at exit. Unset (always, outside
``bench/ingest.py --profile``), nothing is wrapped: the request path runs exactly the code it
runs without the hook, and what is left is one flag test per module or pipeline built.

What is measured, and how:

* a stage's CPU: ``time.thread_time_ns()`` of the calling thread around each call (user and
  system time, so the kernel's part of a write or an fsync counts). A clock read costs about
  0.2 µs here; a clocked call reads two, and about half of that lands in the stage it wraps;
* a wait (the fsync a request waits for): ``time.perf_counter_ns()``, wall time;
* every thread's CPU (``pthread_getcpuclockid``), read at each dump, so a benchmark can tell how
  much of a thread no stage covers (in an ingest worker's main thread: the HTTP server and the
  event loop).

The file holds totals since the process started (a benchmark takes differences)::

    {"pid": 123, "process_cpu_ns": 9, "threads": {"MainThread": 7, ...},
     "stages": {"decode": {"calls": 2, "cpu_ns": 3, "wall_ns": 0}, ...}}

Each stage is clocked from one thread only (true of every stage hooked), so plain ints add up
without a lock.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

DIR = os.environ.get("HEADRACE_STAGE_CLOCK")  # read once, at import
STAGE_CLOCK = DIR is not None  # whether the hook is on
DUMP_SECONDS = 0.5

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# stage: [calls, CPU ns, wall ns]; a list per stage so a wrapper holds its own and adds in place
_stages: dict[str, list[int]] = {}
_dumper: threading.Thread | None = None


def _totals(stage: str) -> list[int]:
    return _stages.setdefault(stage, [0, 0, 0])


def clocked(stage: str, fn: Callable[P, R]) -> Callable[P, R]:
    """``fn``, with its calls and the CPU its caller's thread spends in them added to ``stage``."""
    totals = _totals(stage)
    cpu = time.thread_time_ns

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        start = cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[0] += 1
            totals[1] += cpu() - start

    return call


def clocked_wall(stage: str, fn: Callable[P, R]) -> Callable[P, R]:
    """``clocked``, with the wall time of each call too (a write that waits for the disk)."""
    totals = _totals(stage)
    cpu, wall = time.thread_time_ns, time.perf_counter_ns

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        start, started = cpu(), wall()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[0] += 1
            totals[1] += cpu() - start
            totals[2] += wall() - started

    return call


def clocked_async(
    stage: str, fn: Callable[P, Coroutine[Any, Any, R]]
) -> Callable[P, Coroutine[Any, Any, R]]:
    """``clocked`` for a coroutine function that does not suspend in the common case (an
    authorizer checking a signature); when it does, the CPU of whatever the event loop ran
    meanwhile is counted too."""
    totals = _totals(stage)
    cpu = time.thread_time_ns

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        start = cpu()
        try:
            return await fn(*args, **kwargs)
        finally:
            totals[0] += 1
            totals[1] += cpu() - start

    return call


async def waited(stage: str, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, adding the wall time it took to ``stage`` (a wait, not CPU)."""
    totals = _totals(stage)
    started = time.perf_counter_ns()
    try:
        return await awaitable
    finally:
        totals[0] += 1
        totals[2] += time.perf_counter_ns() - started


class ClockedStage:
    """A stage object whose calls (``__call__`` and its public methods) are clocked as
    ``stage``; its other attributes read through."""

    def __init__(self, stage: str, target: Any) -> None:
        self._stage = stage
        self._target = target
        call = target.__call__
        wrap: Any = clocked_async if inspect.iscoroutinefunction(call) else clocked
        self._call = wrap(stage, call)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.ismethod(value) and not name.startswith("_"):
            value = clocked(self._stage, value)
            setattr(self, name, value)  # found without ``__getattr__`` from now on
        return value


def clock_stages(owner: object, stages: dict[str, str]) -> None:
    """Replace each attribute of ``owner`` named in ``stages`` (attribute: stage) by its clocked
    form, leaving ``None`` alone, and start writing this process's totals."""
    for attribute, stage in stages.items():
        value = getattr(owner, attribute)
        if value is None:
            continue
        if inspect.ismethod(value) or inspect.isfunction(value):
            wrap: Any = clocked_async if inspect.iscoroutinefunction(value) else clocked
            setattr(owner, attribute, wrap(stage, value))
        else:
            setattr(owner, attribute, ClockedStage(stage, value))
    start_dumping()


def thread_cpu_ns() -> dict[str, int]:
    """The CPU time of every live thread of this process, by thread name (names shared by
    several threads are summed)."""
    threads: dict[str, int] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            used = time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
        except OSError:  # it ended meanwhile
            continue
        threads[thread.name] = threads.get(thread.name, 0) + used
    return threads


def snapshot() -> dict[str, Any]:
    """This process's totals so far (the document ``dump`` writes)."""
    threads = thread_cpu_ns()  # before the process's total, which then covers them
    return {
        "pid": os.getpid(),
        "process_cpu_ns": time.process_time_ns(),
        "threads": threads,
        "stages": {
            stage: {"calls": calls, "cpu_ns": cpu, "wall_ns": wall}
            for stage, (calls, cpu, wall) in list(_stages.items())
            if calls
        },
    }


def dump(directory: Path) -> None:
    """Write ``snapshot()`` to ``directory/stageclock-<pid>.json``, whole (via a rename)."""
    path = directory / f"stageclock-{os.getpid()}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(snapshot()))
    os.replace(temporary, path)


def start_dumping() -> None:
    """Start writing this process's totals to ``DIR`` (once per process; no-op without it)."""
    global _dumper
    if DIR is None or _dumper is not None:
        return
    directory = Path(DIR)
    directory.mkdir(parents=True, exist_ok=True)

    def run() -> None:
        while True:
            time.sleep(DUMP_SECONDS)
            with contextlib.suppress(OSError):  # a profile with a gap, not a dead thread
                dump(directory)

    _dumper = threading.Thread(target=run, name="stageclock", daemon=True)
    _dumper.start()
    atexit.register(dump, directory)


__all__ = [
    "STAGE_CLOCK",
    "ClockedStage",
    "clock_stages",
    "clocked",
    "clocked_async",
    "clocked_wall",
    "dump",
    "snapshot",
    "start_dumping",
    "thread_cpu_ns",
    "waited",
]
