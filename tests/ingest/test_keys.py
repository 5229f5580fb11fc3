from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from headrace.authorizers.api_key import ApiKeyCheck
from headrace.cli import main
from headrace.config.load import parse_pipeline
from headrace.server.app import WorkerApp
from headrace.storage.api_keys import KeyStore

PIPELINE = json.dumps({
    "sources": {"app": {"type": "http", "auth": {"type": "api_key", "query": "key"}}},
    "sinks": {"lake": {"type": "lake", "inputs": ["app"]}},
})  # fmt: skip


def test_keys_are_stored_only_as_hashes(data_dir: Path) -> None:
    store = KeyStore(data_dir)
    issued, key = store.create("app", "mobile", None)
    assert key.startswith("hr_") and len(key) > 40
    assert key.encode() not in (data_dir / "keys.db").read_bytes()
    (listed,) = store.list()
    assert (listed.name, listed.prefix, listed.revoked_at_us) == ("mobile", key[:10], None)
    assert store.revoke(issued.id) and not store.revoke(issued.id)


@pytest.mark.anyio
async def test_api_keys_in_header_or_query_revocation_and_per_key_rates(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ApiKeyCheck, "RELOAD_EVERY", 0.0)
    store = KeyStore(data_dir)
    plain, plain_key = store.create("app", "server", None)
    _, slow_key = store.create("app", "widget", 1.0)
    app = WorkerApp(parse_pipeline(PIPELINE), data_dir)
    await app.startup()
    url = "/v1/streams/app/events"
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            assert (
                await client.post(url, json={}, headers={"x-api-key": plain_key})
            ).status_code == 202
            assert (await client.post(url, json={}, params={"key": plain_key})).status_code == 202
            wrong = await client.post(url, json={}, headers={"x-api-key": plain_key + "x"})
            assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_api_key")
            missing = await client.post(url, json={})
            assert missing.json()["error"] == "missing_api_key"
            assert (
                await client.post(url, json={}, headers={"x-api-key": slow_key})
            ).status_code == 202
            limited = await client.post(url, json={}, headers={"x-api-key": slow_key})
            assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
            store.revoke(plain.id)
            revoked = await client.post(url, json={}, headers={"x-api-key": plain_key})
            assert revoked.json()["error"] == "invalid_api_key"
    finally:
        await app.shutdown()


def test_keys_cli(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "p.json"
    config.write_text(PIPELINE)
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--config", str(config), "--data-dir", str(data_dir),
                                   "--source", "app", "--name", "web", "--rate", "50/s"])  # fmt: skip
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("hr_") and "will not be shown again" in created.stderr
    listed = runner.invoke(main, ["keys", "list", "--data-dir", str(data_dir)])
    assert "web" in listed.output and "50/s" in listed.output and key not in listed.output
    assert runner.invoke(main, ["keys", "revoke", "--data-dir", str(data_dir), "1"]).exit_code == 0
    assert "revoked" in runner.invoke(main, ["keys", "list", "--data-dir", str(data_dir)]).output
    bad = runner.invoke(main, ["keys", "create", "--config", str(config), "--data-dir", str(data_dir),
                               "--source", "nope"])  # fmt: skip
    assert bad.exit_code == 2 and 'no source named "nope"' in bad.output
