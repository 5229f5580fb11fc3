"""One worker's app composed (``headrace.server.app.WorkerApp``): which part answers which path,
and what they share (the read credentials, the metrics, the lifespan)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from headrace.config.load import parse_pipeline
from headrace.config.models import default_pipeline
from headrace.ingest.app import IngestApp
from headrace.server.app import WorkerApp
from headrace.web.access import ADMIN_TOKEN_ENV
from web.answers import Recorder, request

pytestmark = pytest.mark.anyio

PIPELINE = json.dumps({
    "sources": {
        "web": {"type": "http", "path": "/in/{stream}"},
        "exports": {"type": "bulk_export", "path": "/exports", "warehouse": {"type": "duckdb"}},
    },
    "sinks": {"lake": {"type": "lake", "inputs": ["web"]}},
})  # fmt: skip


@pytest.fixture(autouse=True)
def no_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = WorkerApp(parse_pipeline(PIPELINE), data_dir)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http
    finally:
        await app.shutdown()


async def test_each_path_reaches_its_part(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and "<title>headrace</title>" in page.text
    loads = await client.get("/v1/loads")
    assert loads.json() == {"loads": [], "next_before": None}
    skipped = await client.post("/exports", json={"type": "data.other", "data": {}})
    assert skipped.json()["status"] == "skipped"
    assert skipped.headers["x-controlshift-processed"] == "1"
    assert (await client.get("/exports")).status_code == 405  # a webhook takes POST only
    assert (await client.post("/in/clicks", json={"a": 1})).status_code == 202  # ingest
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/api/dashboard/streams")).status_code == 200  # the dashboard
    assert (await client.get("/sdk/headrace.js")).status_code == 200
    nowhere = await client.get("/v1/nowhere")
    assert (nowhere.status_code, nowhere.json()["error"]) == (404, "not_found")


async def test_ingest_routes_come_before_the_dashboards(data_dir: Path) -> None:
    anywhere = {"sources": {"web": {"type": "http", "path": "/{stream}"}},
                "sinks": {"lake": {"type": "lake", "inputs": ["web"]}}}  # fmt: skip
    app = WorkerApp(parse_pipeline(json.dumps(anywhere)), data_dir)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            assert (await http.get("/")).status_code == 200  # GET / is the dashboard's
            assert (await http.post("/favicon.ico", json={"a": 1})).status_code == 202
            assert (await http.get("/favicon.ico")).status_code == 405  # the source's, no read:
    finally:
        await app.shutdown()


async def test_the_parts_count_into_one_registry(client: httpx.AsyncClient) -> None:
    await client.post("/exports", json={"type": "data.other", "data": {}})
    await client.post("/in/clicks", json={"a": 1})
    metrics = (await client.get("/metrics")).text
    assert 'headrace_requests_total{source="exports",status="200"} 1' in metrics
    assert 'headrace_requests_total{source="web",status="202"} 1' in metrics


async def test_operations_on_loads_come_only_from_this_servers_pages(
    client: httpx.AsyncClient,
) -> None:
    foreign = await client.post("/v1/loads/1/retry", headers={"origin": "https://evil.example"})
    assert (foreign.status_code, foreign.json()["error"]) == (403, "cross_site_request")
    cross = await client.post("/v1/loads/1/cancel", headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    own = await client.post("/v1/loads/1/retry", headers={"origin": "http://127.0.0.1"})
    assert (own.status_code, own.json()["error"]) == (404, "unknown_load")


async def test_every_read_shares_one_guard(data_dir: Path) -> None:
    guarded = parse_pipeline(json.dumps({**json.loads(PIPELINE), "api": {"read_tokens": ["t"]}}))
    app = WorkerApp(guarded, data_dir, listen_host="0.0.0.0")
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://any.example") as http:
            for path in ("/v1/streams/web/events", "/v1/badrows", "/v1/loads", "/"):
                refused = await http.get(path)
                assert refused.status_code == 401, path
                allowed = await http.get(path, headers={"authorization": "Bearer t"})
                unknown = path.startswith("/v1/streams/")  # nothing stored there yet: a 404
                assert allowed.status_code == (404 if unknown else 200), path
    finally:
        await app.shutdown()


async def test_the_lifespan_is_ingests(data_dir: Path) -> None:
    app = WorkerApp(default_pipeline(), data_dir)
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert (data_dir / "run" / "metrics-w0.json").exists()  # published as the worker stopped


async def test_ingest_alone_serves_no_dashboard(data_dir: Path) -> None:
    ingest = IngestApp(default_pipeline(), data_dir)
    quiet = Recorder()
    assert not await ingest.route(request("GET", "/api/dashboard/streams"), _no_body, quiet)
    assert quiet.messages == []  # left to the app that composes it
    sent = Recorder()
    await ingest(request("GET", "/api/dashboard/streams"), _no_body, sent)
    assert (sent.status, sent.json()["error"]) == (404, "not_found")


async def _no_body() -> dict[str, object]:
    return {"type": "http.request", "body": b"", "more_body": False}
