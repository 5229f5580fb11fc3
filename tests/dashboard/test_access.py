"""Who may read, in a running server: open reads are never exposed beyond loopback, nor
answered to a DNS-rebinding page (``headrace.web.access``; its unit tests: tests/web)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from dashboard.conftest import wait_until
from headrace.web.access import ADMIN_TOKEN_ENV
from support.serverproc import ServerProcess

Serve = Callable[..., ServerProcess]


def test_serve_refuses_to_expose_open_reads(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    from support.serverproc import free_port

    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "serve", "--host", "0.0.0.0",
         "--port", str(free_port()), "--data-dir", f"{tmp_path}/data"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--host 0.0.0.0 would show the dashboard" in result.stderr


def test_dns_rebinding_cannot_read_an_open_server(serve: Serve) -> None:
    server = serve()
    port = server.url.rpartition(":")[2]
    evil = {"Host": f"attacker.example:{port}"}
    assert httpx.post(f"{server.url}/v1/streams/x/events", json=[{"n": 1}]).status_code == 202
    for path in (
        "/v1/streams/x/events",
        "/api/dashboard/overview",
        "/",
        "/v1/loads",
        "/v1/badrows",
    ):
        response = httpx.get(f"{server.url}{path}", headers=evil)
        assert response.status_code == 403, path
        assert response.json()["error"] == "misdirected_host"
        assert "api.read_tokens" in response.json()["message"]
    retry = httpx.post(f"{server.url}/v1/loads/1/retry",
                       headers={**evil, "Origin": f"http://attacker.example:{port}"})  # fmt: skip
    assert retry.status_code == 403 and retry.json()["error"] == "misdirected_host"
    # writes to sources, and the tracker script, answer any name
    written = httpx.post(f"{server.url}/v1/streams/x/events", json=[{"n": 2}], headers=evil)
    assert written.status_code == 202
    assert httpx.get(f"{server.url}/sdk/headrace.js", headers=evil).status_code == 200
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        # 200 once the first events are delivered (before that, stream x is unknown: a 404)
        wait_until(
            lambda h=host: (
                httpx.get(f"{server.url}/v1/streams/x/events", headers={"Host": h}).status_code
                == 200
            ),
            what=f"a read with Host {host}",
        )
