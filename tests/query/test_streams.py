"""A stream nothing was ever stored in is a 404 ``unknown_stream``, for the events API and the
dashboard alike; a known stream with nothing in the range is an empty 200."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.conftest import app_client, write_lake
from headrace.config.load import parse_pipeline
from headrace.query.streams import declared_streams, is_known

NOW = 1_763_800_000_000_000
DECLARED = """
sources:
  orders: {type: http}
  hooks: {type: http, path: "/hooks/{stream}"}
sinks:
  lake:
    type: lake
    inputs: [orders, hooks]
    streams: {invoices: {fields: {total: float64}}, "*": {}}
"""


def test_declared_streams_come_from_sources_and_lake_schemas(data_dir: Path) -> None:
    pipeline = parse_pipeline(DECLARED)
    # "hooks" names its streams in the path, so its own id is no stream
    assert declared_streams(pipeline, "lake") == ["orders", "invoices"]
    sink = pipeline.sinks["lake"]
    assert is_known(pipeline, data_dir, "lake", sink, "orders")
    assert not is_known(pipeline, data_dir, "lake", sink, "signups")
    write_lake(data_dir, "signups", [(NOW, {"plan": "pro"})], source="hooks")
    assert is_known(pipeline, data_dir, "lake", sink, "signups")
    assert not is_known(pipeline, data_dir, "lake", sink, "hooks")


@pytest.mark.anyio
async def test_the_events_api_answers_404_for_a_stream_never_stored(data_dir: Path) -> None:
    write_lake(data_dir, "clicks", [(NOW, {"a": 1})])
    async with app_client(data_dir) as http:
        missing = await http.get("/v1/streams/clickz/events")
        assert missing.status_code == 404
        body = missing.json()
        assert body["error"] == "unknown_stream" and '"clickz"' in body["message"]
        found = await http.get("/v1/streams/clicks/events")
        assert found.status_code == 200 and len(found.json()["events"]) == 1
        # known, but nothing in the range: an empty page, not a 404
        empty = await http.get("/v1/streams/clicks/events", params={"until": "2001-01-01"})
        assert empty.status_code == 200 and empty.json()["events"] == []


@pytest.mark.anyio
async def test_a_stream_the_pipeline_names_is_known_before_its_first_event(
    data_dir: Path,
) -> None:
    async with app_client(data_dir, DECLARED) as http:
        orders = await http.get("/v1/streams/orders/events")
        assert orders.status_code == 200 and orders.json()["events"] == []
        assert (await http.get("/v1/streams/nothing/events")).status_code == 404


@pytest.mark.anyio
async def test_dashboard_stream_views_answer_404_for_unknown_streams(data_dir: Path) -> None:
    write_lake(data_dir, "shop", [(NOW, {"action": "buy"})])
    async with app_client(data_dir) as http:
        for action in ("counts", "events", "columns", "fields", "export.csv"):
            response = await http.get(f"/api/dashboard/streams/nope/{action}")
            assert response.status_code == 404, action
            assert response.json()["error"] == "unknown_stream", action
        top = await http.get("/api/dashboard/streams/nope/top", params={"field": "a"})
        assert top.status_code == 404
        hits = await http.get("/api/dashboard/pagehits", params={"stream": "nope"})
        assert hits.status_code == 404 and hits.json()["error"] == "unknown_stream"
        counts = await http.get("/api/dashboard/streams/shop/counts", params={"until": "2001"})
        assert counts.status_code == 200 and counts.json()["total"] == 0
        listed = (await http.get("/api/dashboard/streams")).json()["streams"]
        assert [(s["stream"], s["sink"], s["events"]) for s in listed] == [("shop", "lake", 1)]
