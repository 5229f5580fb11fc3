"""The health and metrics port of ``headrace deliver`` (``server.delivery_http``): what it
answers, and to whom (the same Host check and read token as an ingest worker's)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headrace.config.models import ApiSettings
from headrace.server.delivery_http import DeliveryStatusServer
from headrace.telemetry import metrics as m
from headrace.web.access import ADMIN_TOKEN_ENV, ReadAccess

PATHS = ["/healthz", "/readyz", "/metrics"]


@pytest.fixture(autouse=True)
def no_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)


def serving(run_dir: Path, access: ReadAccess | None) -> Iterator[str]:
    run_dir.mkdir(parents=True, exist_ok=True)
    registry = m.Registry()
    registry.add(m.key("headrace_events_delivered_total", sink="db"), 5)
    m.write_snapshot(run_dir, "delivery", registry)
    status = {"updated_at": time.time(), "unhealthy": {"db": "connection refused"}}
    (run_dir / "delivery.json").write_text(json.dumps(status))
    server = DeliveryStatusServer(run_dir, ("127.0.0.1", 0), access).start()
    try:
        yield "http://{}:{}".format(*server.address)
    finally:
        server.stop()


@pytest.fixture
def open_port(tmp_path: Path) -> Iterator[str]:
    yield from serving(tmp_path / "run", None)


@pytest.fixture
def token_port(tmp_path: Path) -> Iterator[str]:
    api = ApiSettings.model_validate({"read_tokens": ["sc-rape"]})
    yield from serving(tmp_path / "run", ReadAccess(api, listen_host="0.0.0.0"))


@pytest.mark.parametrize("path", PATHS)
def test_open_port_refuses_a_rebinding_host(open_port: str, path: str) -> None:
    refused = httpx.get(open_port + path, headers={"host": "attacker.example"})
    assert (refused.status_code, refused.json()["error"]) == (403, "misdirected_host")
    for host in ("127.0.0.1:8081", "localhost", "[::1]:8081"):
        assert httpx.get(open_port + path, headers={"host": host}).status_code != 403


def test_open_port_answers_loopback_in_full(open_port: str) -> None:
    assert httpx.get(open_port + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(open_port + "/readyz")
    assert (ready.status_code, ready.json()["problems"]) == (
        503,
        {"sinks.db": "connection refused"},
    )
    metrics = httpx.get(open_port + "/metrics").text
    assert 'headrace_events_delivered_total{sink="db"} 5' in metrics
    assert httpx.get(open_port + "/nothing").status_code == 404


def test_with_a_read_token_metrics_need_it_and_probes_need_none(token_port: str) -> None:
    for host in ("attacker.example", "10.0.0.7:8081"):  # any name, as a load balancer sends
        headers = {"host": host}
        refused = httpx.get(token_port + "/metrics", headers=headers)
        assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized_read")
        scraped = httpx.get(
            token_port + "/metrics", headers={**headers, "authorization": "Bearer sc-rape"}
        )
        assert scraped.status_code == 200 and "headrace_events_delivered_total" in scraped.text
        assert httpx.get(token_port + "/healthz", headers=headers).json() == {"status": "ok"}
        status_only = httpx.get(token_port + "/readyz", headers=headers)
        assert (status_only.status_code, status_only.json()) == (503, {"status": "not_ready"})
        detail = httpx.get(
            token_port + "/readyz", headers={**headers, "authorization": "Bearer sc-rape"}
        )
        assert detail.json()["problems"] == {"sinks.db": "connection refused"}


def test_the_admin_token_guards_a_port_built_without_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "adm1n")
    for url in serving(tmp_path / "run", None):
        assert httpx.get(url + "/metrics").status_code == 401
        assert httpx.get(url + "/metrics", headers={"authorization": "adm1n"}).status_code == 200


DELIVER_PIPELINE = """
buffer: {type: nats, servers: ["nats://127.0.0.1:1"], stream: HEADRACE}
sources:
  e: {type: http}
sinks:
  db: {type: postgres, inputs: [e], dsn: "host=127.0.0.1", table: t}
%s
"""


@pytest.mark.parametrize("tokens", [False, True])
def test_deliver_uses_the_pipelines_read_tokens_and_refuses_open_exposure(
    tmp_path: Path, tokens: bool
) -> None:
    """``deliver --metrics-host 0.0.0.0`` with open reads refuses to start, naming the flag;
    with ``api.read_tokens`` it starts (and its port takes that token: see ``supervisor``)."""
    import subprocess
    import sys

    from support.serverproc import free_port

    extra = "api: {read_tokens: [scrape-token]}" if tokens else ""
    config = tmp_path / "pipeline.yaml"
    config.write_text(DELIVER_PIPELINE % extra)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "headrace.cli", "deliver", "-c", str(config), "-d",
         str(tmp_path / "data"), "--metrics-host", "0.0.0.0", "--metrics-port", str(port)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        if not tokens:
            assert proc.wait(60) == 1
            assert proc.stderr is not None
            assert "--metrics-host 0.0.0.0 would show metrics and health" in proc.stderr.read()
            return
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                bare = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "deliver's status port never answered"
                time.sleep(0.2)
        assert bare.status_code == 401
        auth = {"Authorization": "Bearer scrape-token"}
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", headers=auth).status_code == 200
    finally:
        proc.terminate()
        proc.wait(60)
