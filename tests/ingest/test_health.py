"""Liveness, readiness and metrics of a worker (``headrace.ingest.health``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from headrace.buffer import open_buffer
from headrace.config.models import LocalBuffer
from headrace.ingest.health import Health, read_delivery_status
from headrace.telemetry import metrics as m
from web.answers import Recorder


def write_status(run_dir: Path, **status: object) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "delivery.json").write_text(json.dumps(status))


def test_only_a_fresh_delivery_status_counts(tmp_path: Path) -> None:
    assert read_delivery_status(tmp_path) is None
    write_status(tmp_path, updated_at=time.time() - 60)
    assert read_delivery_status(tmp_path) is None
    write_status(tmp_path, updated_at=time.time(), unhealthy={})
    assert read_delivery_status(tmp_path) is not None
    (tmp_path / "delivery.json").write_text("{not json")
    assert read_delivery_status(tmp_path) is None


@pytest.mark.anyio
async def test_readiness_lists_every_problem(data_dir: Path) -> None:
    run_dir = data_dir / "run"
    writer = open_buffer(LocalBuffer(), data_dir).writer("w0")
    registry = m.Registry()
    health = Health(writer, run_dir, ("w0", registry))
    assert health.problems() == {"delivery": "the delivery process is not running"}
    write_status(run_dir, updated_at=time.time(), unhealthy={"db": "connection refused"})
    assert health.problems() == {"sinks.db": "connection refused"}
    not_ready = Recorder()
    await health("/readyz", not_ready)
    assert not_ready.status == 503 and not_ready.json()["status"] == "not_ready"
    write_status(run_dir, updated_at=time.time(), unhealthy={})
    ready = Recorder()
    await health("/readyz", ready)
    assert (ready.status, ready.json()) == (200, {"status": "ready"})
    alive = Recorder()
    await health("/healthz", alive)
    assert (alive.status, alive.json()) == (200, {"status": "ok"})


@pytest.mark.anyio
async def test_metrics_are_prometheus_text_with_the_live_counters(data_dir: Path) -> None:
    registry = m.Registry()
    registry.add(m.key("headrace_requests_total", source="web", status="202"), 3)
    health = Health(open_buffer(LocalBuffer(), data_dir).writer("w0"), data_dir, ("w0", registry))
    sent = Recorder()
    await health("/metrics", sent)
    assert sent.headers["content-type"] == "text/plain; version=0.0.4"
    assert 'headrace_requests_total{source="web",status="202"} 3' in sent.body.decode()
