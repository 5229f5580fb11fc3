"""The profile hook of ``bench/ingest.py --profile``: clocks that count what they wrap, the files a
server's workers write with ``HEADRACE_STAGE_CLOCK`` set, and nothing wrapped without it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from headrace.buffer.local import frames, writer
from headrace.ingest import pipeline
from headrace.telemetry import stageclock
from support.serverproc import ServerProcess


def busy(ms: float) -> int:
    """Spin for ``ms`` milliseconds of this thread's CPU."""
    end = time.thread_time_ns() + int(ms * 1e6)
    n = 0
    while time.thread_time_ns() < end:
        n += 1
    return n


def totals(stage: str) -> dict[str, int]:
    return dict(stageclock.snapshot()["stages"][stage])


def test_clocked_counts_calls_and_the_cpu_spent_in_them() -> None:
    spin = stageclock.clocked("test: spin", busy)
    spin(5)
    spin(5)
    got = totals("test: spin")
    assert got["calls"] == 2
    assert got["cpu_ns"] >= 10_000_000
    assert got["wall_ns"] == 0


def test_a_call_that_raises_is_counted_too() -> None:
    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        stageclock.clocked("test: fails", fail)()
    assert totals("test: fails")["calls"] == 1


def test_clocked_wall_counts_the_time_waited_as_well() -> None:
    stageclock.clocked_wall("test: sleep", time.sleep)(0.02)
    got = totals("test: sleep")
    assert got["wall_ns"] >= 20_000_000
    assert got["cpu_ns"] < got["wall_ns"]  # sleeping costs no CPU


def test_waited_counts_wall_time_and_passes_the_result_through() -> None:
    async def later() -> str:
        await asyncio.sleep(0.02)
        return "done"

    assert asyncio.run(stageclock.waited("test: wait", later())) == "done"
    got = totals("test: wait")
    assert got["calls"] == 1 and got["wall_ns"] >= 20_000_000 and got["cpu_ns"] == 0


class Stage:
    """A stage object like ``ingest.stages.Decode``: callable, with a method and a setting."""

    limit = 7

    def __call__(self, ms: float) -> int:
        return busy(ms)

    def prepare(self, ms: float) -> int:
        return busy(ms)


class AsyncStage:
    async def __call__(self, ms: float) -> str:
        busy(ms)
        return "ok"


class Owner:
    def __init__(self) -> None:
        self.stage = Stage()
        self.checker = AsyncStage()
        self.absent: Stage | None = None

    def answer(self) -> int:
        return busy(1)


def test_clock_stages_wraps_calls_methods_and_coroutines_and_reads_settings_through() -> None:
    owner = Owner()
    stageclock.clock_stages(
        owner,
        {"stage": "test: stage", "checker": "test: check", "absent": "x", "answer": "test: ans"},
    )
    assert owner.absent is None
    assert owner.stage.limit == 7
    owner.stage.prepare(2)
    owner.stage(2)
    assert asyncio.run(owner.checker(2)) == "ok"
    owner.answer()
    assert totals("test: stage")["calls"] == 2
    assert totals("test: stage")["cpu_ns"] >= 4_000_000
    assert totals("test: check")["calls"] == 1
    assert totals("test: check")["cpu_ns"] >= 2_000_000
    assert totals("test: ans")["calls"] == 1


def test_snapshot_reads_each_threads_cpu_and_dump_writes_it_whole(tmp_path: Path) -> None:
    busy(5)
    threads = stageclock.thread_cpu_ns()
    assert threads["MainThread"] >= 5_000_000
    stageclock.dump(tmp_path)
    (path,) = tmp_path.iterdir()
    doc = json.loads(path.read_text())
    assert doc["threads"]["MainThread"] >= 5_000_000
    assert doc["process_cpu_ns"] >= doc["threads"]["MainThread"]
    assert path.name.startswith("stageclock-") and path.suffix == ".json"


def test_without_the_variable_nothing_on_the_request_path_is_wrapped() -> None:
    assert not stageclock.STAGE_CLOCK  # the test run does not set HEADRACE_STAGE_CLOCK
    assert writer.encode_frame is frames.encode_frame
    assert not hasattr(writer._settle, "__wrapped__")
    assert pipeline.STAGE_CLOCK is False


def test_a_server_started_with_the_variable_writes_each_workers_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock_dir = tmp_path / "clock"
    monkeypatch.setenv("HEADRACE_STAGE_CLOCK", str(clock_dir))
    server = ServerProcess(tmp_path / "data", workers=1).start()
    try:
        for i in range(20):
            answer = httpx.post(f"{server.url}/v1/streams/s/events", json={"n": i}, timeout=10)
            assert answer.status_code == 202, answer.text
        time.sleep(3 * stageclock.DUMP_SECONDS)
    finally:
        server.stop()
    docs = [json.loads(p.read_text()) for p in clock_dir.glob("stageclock-*.json")]
    assert len(docs) == 1  # the one worker; the supervisor and delivery clock nothing
    stages = docs[0]["stages"]
    for stage in ("receive", "decode", "ids", "frame encode", "answer"):
        assert stages[stage]["calls"] >= 20 and stages[stage]["cpu_ns"] > 0
    assert stages["settle"]["calls"] >= 1 and stages["settle"]["cpu_ns"] > 0
    assert stages["fsync wait"]["calls"] == 20 and stages["fsync wait"]["wall_ns"] > 0
    assert 1 <= stages["write + fsync"]["calls"] <= 20
    assert stages["write + fsync"]["wall_ns"] >= stages["write + fsync"]["cpu_ns"] > 0
    assert docs[0]["threads"]["MainThread"] > sum(
        stages[s]["cpu_ns"] for s in ("receive", "decode", "ids", "frame encode", "answer")
    )
    assert docs[0]["threads"]["group-commit"] >= stages["write + fsync"]["cpu_ns"]
