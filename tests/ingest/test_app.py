from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.records import expand_events
from headrace.config.load import parse_pipeline
from headrace.config.models import Pipeline, default_pipeline
from headrace.server.app import WorkerApp

pytestmark = pytest.mark.anyio

CONFIGURED = """
sources:
  split:
    type: http
    path: /webhooks/split/impressions
    success_status: 200
    success_body: "OK"
    limits: {max_body_bytes: 2KiB, max_events: 3}
  hooks:
    type: http
    id_header: webhook-id
  orders:
    type: http
    id_field: order_id
buffer: {max_bytes: 2KiB}
sinks:
  lake: {type: lake, inputs: [split, hooks, orders]}
"""


async def started(app: WorkerApp) -> AsyncIterator[httpx.AsyncClient]:
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            yield client
    finally:
        await app.shutdown()


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in started(WorkerApp(default_pipeline(), data_dir)):
        yield c


@pytest.fixture
def configured() -> Pipeline:
    return parse_pipeline(CONFIGURED)


def stored(data_dir: Path) -> list[tuple[str, str, dict[str, object]]]:
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 24).items
    return [(e.stream, e.id, e.data) for item in items for e in expand_events(item.request)]


async def test_accepts_object_array_ndjson_and_unlabelled_gzip(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    url = "/v1/streams/clicks/events"
    one = await client.post(url, json={"a": 1})
    many = await client.post(url, json=[{"a": 2}, {"a": 3}])
    nd = await client.post(
        url, content=b'{"a":4}\n{"a":5}\n', headers={"content-type": "application/x-ndjson"}
    )
    gz = await client.post(url, content=gzip.compress(b'[{"a":6}]'))  # no Content-Encoding
    assert [r.status_code for r in (one, many, nd, gz)] == [202] * 4
    assert [r.json()["accepted"] for r in (one, many, nd, gz)] == [1, 2, 2, 1]
    rows = stored(data_dir)
    assert [d["a"] for _, _, d in rows] == [1, 2, 3, 4, 5, 6]
    assert [i for _, i, _ in rows][1:3] == many.json()["ids"]
    assert {s for s, _, _ in rows} == {"clicks"}


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"a":', 400, "invalid_json"),
        (b"[1, 2]", 400, "not_an_object"),
        (b"", 400, "empty_body"),
        (b'{"n": 123456789012345678901234567890}', 400, "number_out_of_range"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "too_deep"),
    ],
)
async def test_bad_bodies_get_specific_reasons(
    client: httpx.AsyncClient, data_dir: Path, body: bytes, status: int, reason: str
) -> None:
    response = await client.post("/v1/streams/clicks/events", content=body)
    assert (response.status_code, response.json()["error"]) == (status, reason)
    assert stored(data_dir) == []


async def test_invalid_stream_names_and_unknown_paths(client: httpx.AsyncClient) -> None:
    bad = await client.post("/v1/streams/..%2Fetc/events", json={})
    assert bad.status_code in (400, 404)
    assert (await client.post("/nowhere", json={})).json()["error"] == "not_found"
    assert (await client.delete("/v1/streams/x/events")).status_code == 405


async def test_configured_sources(configured: Pipeline, data_dir: Path) -> None:
    async for client in started(WorkerApp(configured, data_dir)):
        split = await client.post(
            "/webhooks/split/impressions", content=gzip.compress(b'[{"k":"u1"}]')
        )
        assert (split.status_code, split.text) == (200, "OK")
        too_big = await client.post(
            "/webhooks/split/impressions", content=b"[" + b'{"k":1},' * 400 + b'{"k":1}]'
        )
        assert (too_big.status_code, too_big.json()["error"]) == (413, "body_too_large")
        too_many = await client.post("/v1/streams/split/events", json=[{}, {}, {}, {}])
        assert (too_many.status_code, too_many.json()["error"]) == (413, "too_many_events")
        unknown = await client.post("/v1/streams/clicks/events", json={})
        assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_stream")
        hooked = await client.post(
            "/v1/streams/hooks/events", json={"x": 1}, headers={"webhook-id": "msg_1"}
        )
        assert hooked.json()["ids"] == ["msg_1"]
        ordered = await client.post(
            "/v1/streams/orders/events", json=[{"order_id": 42}, {"other": 1}]
        )
        assert ordered.json()["ids"][0] == "42" and len(ordered.json()["ids"][1]) == 36
        metrics = (await client.get("/metrics")).text
        assert (
            'headrace_requests_rejected_total{reason="too_many_events",source="split"} 1' in metrics
        )
        assert 'headrace_requests_total{source="split",status="200"} 1' in metrics


async def test_a_full_buffer_answers_503_with_retry_after(
    configured: Pipeline, data_dir: Path
) -> None:
    app = WorkerApp(configured, data_dir)
    async for client in started(app):
        first = await client.post("/v1/streams/orders/events", json={"pad": "x" * 3000})
        assert first.status_code == 202
        app.ingest.writer.guard.refresh()  # type: ignore[attr-defined]  # the local buffer measures now
        full = await client.post("/v1/streams/orders/events", json={"a": 1})
        assert full.status_code == 503 and full.json()["error"] == "buffer_full"
        assert int(full.headers["retry-after"]) > 0
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "buffer" in ready.json()["problems"]


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 503  # no delivery process in this test
    assert ready.json()["problems"] == {"delivery": "the delivery process is not running"}


async def test_the_decoded_ceiling_runs_the_request_path_and_stores_nothing(
    data_dir: Path,
) -> None:
    async for client in started(WorkerApp(default_pipeline(), data_dir, noop_endpoint=True)):
        good = await client.post("/_decoded/v1/streams/clicks/events", json=[{"a": 1}, {"a": 2}])
        bad = await client.post("/_decoded/v1/streams/clicks/events", content=b'{"a":')
        lost = await client.post("/_decoded/nowhere", json={})
        metrics = (await client.get("/metrics")).text
    assert good.status_code == 202 and good.json()["accepted"] == 2
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_json")
    assert lost.json()["error"] == "not_found"
    assert stored(data_dir) == []
    assert "headrace_events_accepted_total{" not in metrics


async def test_the_decoded_ceiling_needs_the_noop_flag(client: httpx.AsyncClient) -> None:
    response = await client.post("/_decoded/v1/streams/clicks/events", json={"a": 1})
    assert response.json()["error"] == "not_found"
