"""Liveness, readiness and metrics of a worker (``headrace.ingest.health``), and who may see
them: the Host check against DNS rebinding, a read token on ``/metrics``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from headrace.buffer import open_buffer
from headrace.config.models import ApiSettings, LocalBuffer
from headrace.ingest.health import Health, read_delivery_status
from headrace.telemetry import metrics as m
from headrace.web.access import ADMIN_TOKEN_ENV, ReadAccess
from web.answers import Recorder, request

OPEN = ReadAccess(ApiSettings())
TOKEN = ReadAccess(ApiSettings.model_validate({"read_tokens": ["sc-rape"]}))
REBINDING = {"host": "attacker.example:8080"}


@pytest.fixture(autouse=True)
def no_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)


async def ask(health: Health, path: str, **headers: str) -> Recorder:
    sent = Recorder()
    await health(request("GET", path, headers=headers or {"host": "127.0.0.1:8080"}), sent)
    return sent


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
    health = Health(writer, run_dir, ("w0", registry), access=OPEN)
    assert health.problems() == {"delivery": "the delivery process is not running"}
    write_status(run_dir, updated_at=time.time(), unhealthy={"db": "connection refused"})
    assert health.problems() == {"sinks.db": "connection refused"}
    not_ready = await ask(health, "/readyz")
    assert (not_ready.status, not_ready.json()) == (
        503, {"status": "not_ready", "problems": {"sinks.db": "connection refused"}},
    )  # fmt: skip
    write_status(run_dir, updated_at=time.time(), unhealthy={})
    ready = await ask(health, "/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "ready"})
    alive = await ask(health, "/healthz")
    assert (alive.status, alive.json()) == (200, {"status": "ok"})


@pytest.mark.anyio
async def test_metrics_are_prometheus_text_with_the_live_counters(data_dir: Path) -> None:
    registry = m.Registry()
    registry.add(m.key("headrace_requests_total", source="web", status="202"), 3)
    writer = open_buffer(LocalBuffer(), data_dir).writer("w0")
    health = Health(writer, data_dir, ("w0", registry), access=OPEN)
    sent = await ask(health, "/metrics")
    assert sent.headers["content-type"] == "text/plain; version=0.0.4"
    assert 'headrace_requests_total{source="web",status="202"} 3' in sent.body.decode()


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_open_reads_answer_no_rebinding_host(data_dir: Path, path: str) -> None:
    writer = open_buffer(LocalBuffer(), data_dir).writer("w0")
    health = Health(writer, data_dir / "run", ("w0", m.Registry()), access=OPEN)
    refused = await ask(health, path, **REBINDING)
    assert (refused.status, refused.json()["error"]) == (403, "misdirected_host")
    for host in ("localhost:8080", "127.0.0.1", "[::1]:9"):
        assert (await ask(health, path, host=host)).status != 403
    # a request without Host is no browser's; a token is no use while none is configured
    assert (await ask(health, path, authorization="Bearer x")).status != 403


@pytest.mark.anyio
async def test_with_read_tokens_metrics_need_one_and_probes_show_no_problems(
    data_dir: Path,
) -> None:
    registry = m.Registry()
    registry.add(m.key("headrace_requests_total", source="web", status="202"))
    writer = open_buffer(LocalBuffer(), data_dir).writer("w0")
    health = Health(writer, data_dir / "run", ("w0", registry), access=TOKEN)
    for host in REBINDING["host"], "127.0.0.1":  # with a credential configured, any name may ask
        refused = await ask(health, "/metrics", host=host)
        assert (refused.status, refused.json()["error"]) == (401, "unauthorized_read")
        scraped = await ask(health, "/metrics", host=host, authorization="Bearer sc-rape")
        assert scraped.status == 200 and "headrace_requests_total" in scraped.body.decode()
        alive = await ask(health, "/healthz", host=host)  # a load balancer sends no token
        assert (alive.status, alive.json()) == (200, {"status": "ok"})
        # readiness for a prober: the status; the problems (names of sinks, errors) for readers
        status_only = await ask(health, "/readyz", host=host)
        assert (status_only.status, status_only.json()) == (503, {"status": "not_ready"})
        detail = await ask(health, "/readyz", host=host, authorization="sc-rape")
        assert detail.json()["problems"] == {"delivery": "the delivery process is not running"}
    wrong = await ask(health, "/metrics", authorization="Bearer guess")
    assert wrong.status == 401
