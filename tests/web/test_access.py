"""Who may read: tokens, basic auth, the Host check against DNS rebinding, refusing to expose
open reads beyond loopback; which operator requests come from another site."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from headrace.config.models import ApiSettings, Pipeline, default_pipeline
from headrace.web.access import (
    ADMIN_TOKEN_ENV,
    DashboardExposed,
    ReadAccess,
    check_exposure,
    cross_site,
    host_name,
    is_loopback,
    require_read,
)
from web.answers import Recorder, request


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


def test_open_reads_refuse_a_host_other_than_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    access = ReadAccess(default_pipeline())
    for host in ("127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:8080", "127.0.0.1", None):
        assert not access.misdirected(host), host
    for host in ("attacker.example:8080", "attacker.example", "127.0.0.1.nip.io:80", "[::2]:1"):
        assert access.misdirected(host), host
    assert not ReadAccess(pipeline(read_tokens=["t"])).misdirected("attacker.example:8080")


def test_host_names_lose_their_port() -> None:
    assert host_name("[::1]:8080") == "[::1]" and host_name("[::1]") == "[::1]"
    assert host_name(" localhost:80 ") == "localhost" and host_name("example.org") == "example.org"


async def guarded(access: ReadAccess, headers: dict[str, str]) -> tuple[bool, Recorder]:
    sent = Recorder()
    allowed = await require_read(access, request(headers=headers), sent)
    return allowed, sent


@pytest.mark.anyio
async def test_require_read_checks_the_host_then_the_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    open_reads = ReadAccess(default_pipeline())
    assert (await guarded(open_reads, {"host": "localhost:8080"}))[0]
    assert (await guarded(open_reads, {}))[0]  # no Host: not a browser
    allowed, sent = await guarded(open_reads, {"host": "attacker.example"})
    assert not allowed and sent.status == 403 and sent.json()["error"] == "misdirected_host"

    tokens = ReadAccess(pipeline(read_tokens=["tok-1"], read_header="X-Read"))
    allowed, sent = await guarded(tokens, {"host": "attacker.example"})
    assert not allowed and (sent.status, sent.json()["error"]) == (401, "unauthorized_read")
    assert (await guarded(tokens, {"host": "any.example", "x-read": "Bearer tok-1"}))[0]
    allowed, sent = await guarded(tokens, {"authorization": "Bearer tok-1"})  # another header
    assert not allowed and sent.status == 401


@pytest.mark.parametrize(
    ("headers", "foreign"),
    [
        ({}, False),  # curl, a script: no browser
        ({"sec-fetch-site": "same-origin", "origin": "http://h:1", "host": "h:1"}, False),
        ({"sec-fetch-site": "none"}, False),  # typed into the address bar
        ({"sec-fetch-site": "cross-site"}, True),
        ({"sec-fetch-site": "same-site"}, True),  # a sibling subdomain is another site's page
        ({"origin": "http://evil.example", "host": "h:1"}, True),
        ({"origin": "http://h:1/", "host": "h:1"}, False),
    ],
)
def test_cross_site_requests_are_told_apart(headers: dict[str, Any], foreign: bool) -> None:
    assert cross_site(request(headers=headers)) is foreign
