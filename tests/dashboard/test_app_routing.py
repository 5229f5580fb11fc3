"""Where the dashboard sits among the ingest routes (in-process, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from headrace.config.load import parse_pipeline
from headrace.errors import ConfigError
from headrace.server.app import WorkerApp


def pipeline(path: str) -> str:
    return json.dumps({
        "sources": {"hooks": {"type": "http", "path": path}},
        "sinks": {"lake": {"type": "lake", "inputs": ["hooks"]}},
    })  # fmt: skip


@pytest.mark.anyio
async def test_the_dashboard_answers_get_slash_even_beside_a_source_there(data_dir: Path) -> None:
    app = WorkerApp(parse_pipeline(pipeline("/")), data_dir)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            page = await client.get("/")
            assert page.status_code == 200 and "<title>headrace</title>" in page.text
            assert (await client.post("/", json={"a": 1})).status_code == 202  # the source
            sdk = await client.get("/sdk/headrace.js")
            assert sdk.headers["access-control-allow-origin"] == "*"
            missing = await client.get("/dashboard/static/../../pyproject.toml")
            assert missing.status_code == 404
            vendored = await client.get("/dashboard/static/vendor/uPlot.iife.min.js")
            assert vendored.status_code == 200 and b"uPlot" in vendored.content
    finally:
        await app.shutdown()


@pytest.mark.parametrize("path", ["/demo", "/sdk/x", "/dashboard/x", "/api/dashboard/x"])
def test_dashboard_paths_are_reserved(path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline(pipeline(path))
    assert "reserved by headrace (the dashboard)" in str(info.value)
