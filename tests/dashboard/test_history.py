"""The supervisor's metric history and the rates drawn from it."""

from __future__ import annotations

from pathlib import Path

from headrace.dashboard import history as h
from headrace.telemetry import metrics as m


def test_samples_rates_and_restarts(tmp_path: Path) -> None:
    run = tmp_path / "run"
    registry = m.Registry()
    accepted = m.key("headrace_events_accepted_total", source="web")
    registry.add(accepted, 100)
    m.write_snapshot(run, "w0", registry)
    recorder = h.HistoryRecorder(run, keep=3)
    recorder.sample(now=1000.0)
    registry.add(accepted, 50)
    m.write_snapshot(run, "w0", registry)
    recorder.sample(now=1010.0)
    restarted = m.Registry()
    restarted.add(accepted, 20)  # the worker restarted: its count began again
    m.write_snapshot(run, "w0", restarted)
    recorder.sample(now=1020.0)
    samples = h.read_history(run)
    assert [t for t, _ in samples] == [1000.0, 1010.0, 1020.0]
    assert h.rates(samples, "headrace_events_accepted_total", "source") == {
        "web": [[1010.0, 5.0], [1020.0, 2.0]]
    }
    recorder.sample(now=1030.0)
    assert len(h.read_history(run)) == 3  # only the last `keep`
    assert h.totals(samples, "headrace_events_accepted_total", "source") == {("web",): 20.0}


def test_no_history_yet(tmp_path: Path) -> None:
    assert h.read_history(tmp_path) == []
    assert h.rates([], "x", "y") == {}


def test_a_minute_a_day_survives_a_restart(tmp_path: Path) -> None:
    run = tmp_path / "run"
    registry = m.Registry()
    accepted = m.key("headrace_events_accepted_total", source="web")
    recorder = h.HistoryRecorder(run, keep=3)
    for step in range(13):  # two minutes of 10 s samples
        registry.add(accepted, 10)
        m.write_snapshot(run, "w0", registry)
        recorder.sample(now=1000.0 + 10 * step)
    assert len(h.read_history(run)) == 3  # the fine samples: only the last `keep`
    # `headrace serve` empties run/ when it starts; the minute samples live beside it
    import shutil

    shutil.rmtree(run)
    restarted = h.HistoryRecorder(run, keep=3)
    assert [t for t, _ in restarted.minutes] == [1000.0, 1060.0, 1120.0]
    registry = m.Registry()
    registry.add(accepted, 5)
    m.write_snapshot(run, "w0", registry)
    restarted.sample(now=1300.0)
    samples = h.read_history(run, since=1000.0)
    assert [t for t, _ in samples] == [1000.0, 1060.0, 1120.0, 1300.0]
    assert h.rates(samples, "headrace_events_accepted_total", "source")["web"][-1] == [
        1300.0, 5 / 180
    ]  # fmt: skip
    assert [t for t, _ in h.read_history(run, since=1100.0)] == [1120.0, 1300.0]
