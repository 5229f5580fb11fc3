"""Who may read: tokens, basic auth, and refusing to expose open reads beyond loopback."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from dashboard.conftest import wait_until
from headrace.config.models import ApiSettings, Pipeline, default_pipeline
from headrace.dashboard.access import (
    ADMIN_TOKEN_ENV,
    DashboardExposed,
    ReadAccess,
    check_exposure,
    is_loopback,
)
from support.serverproc import ServerProcess

Serve = Callable[..., ServerProcess]


def pipeline(**api: object) -> Pipeline:
    return default_pipeline().model_copy(update={"api": ApiSettings.model_validate(api)})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_open_on_loopback_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    access = ReadAccess(default_pipeline())
    assert access.open and access.allows(None)
    check_exposure(default_pipeline(), "127.0.0.1")
    check_exposure(default_pipeline(), "::1")


def test_tokens_and_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    access = ReadAccess(pipeline(read_tokens=["tok-1"], users={"ada": "pw"}))
    assert not access.open
    assert access.allows("Bearer tok-1") and access.allows("tok-1")
    assert access.allows(basic("anyone", "tok-1"))
    assert access.allows(basic("ada", "pw"))
    for wrong in [None, "", "Bearer tok-2", basic("ada", "tok"), basic("bob", "pw"),
                  "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()]:  # fmt: skip
        assert not access.allows(wrong), wrong


def test_environment_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "from-env")
    access = ReadAccess(default_pipeline())
    assert not access.open and access.allows("Bearer from-env")
    check_exposure(default_pipeline(), "0.0.0.0")


def test_listening_beyond_loopback_needs_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    for host in ["0.0.0.0", "::", "192.0.2.10", "example.org"]:
        with pytest.raises(DashboardExposed, match=r"api\.read_tokens"):
            check_exposure(default_pipeline(), host)
    check_exposure(pipeline(users={"ada": "pw"}), "0.0.0.0")
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and not is_loopback("0.0.0.0")


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


def test_open_reads_refuse_a_host_other_than_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    access = ReadAccess(default_pipeline())
    for host in ("127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:8080", "127.0.0.1", None):
        assert not access.misdirected(host), host
    for host in ("attacker.example:8080", "attacker.example", "127.0.0.1.nip.io:80", "[::2]:1"):
        assert access.misdirected(host), host
    assert not ReadAccess(pipeline(read_tokens=["t"])).misdirected("attacker.example:8080")


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
