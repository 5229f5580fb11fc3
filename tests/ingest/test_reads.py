"""Reading events back over HTTP (``headrace.ingest.reads.EventReads``), called directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headrace.config.load import parse_pipeline
from headrace.config.models import ApiSettings, Pipeline, default_pipeline
from headrace.ingest.reads import EventReads
from headrace.ingest.routes import Router
from headrace.sinks import build_sink
from headrace.storage.state import Checkpoint
from headrace.web.access import ADMIN_TOKEN_ENV, ReadAccess
from support.events import event
from support.pgschema import DSN, throwaway_schema
from web.answers import Recorder, request

pytestmark = pytest.mark.anyio

PIPELINE = json.dumps({
    "sources": {
        "hits": {"type": "http", "path": "/hits", "read": {}},
        "hooks": {"type": "http", "path": "/hooks"},
        "orders": {"type": "http"},
    },
    "sinks": {
        "lake": {"type": "lake", "inputs": ["hits", "hooks"]},
        "db": {"type": "postgres", "inputs": ["orders"], "dsn": "postgresql://127.0.0.1/x",
               "table": "orders"},
    },
})  # fmt: skip


@pytest.fixture(autouse=True)
def no_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)


async def read(pipeline: Pipeline, data_dir: Path, target: str, **headers: str) -> Recorder:
    path, _, query = target.partition("?")
    matched = Router(pipeline).match(path)
    assert matched is not None
    route, stream = matched
    reads = EventReads(pipeline, data_dir, ReadAccess(pipeline))
    sent = Recorder()
    await reads(request("GET", path, headers=headers, query=query.encode()), sent, route, stream)
    return sent


def test_what_a_get_reads() -> None:
    router = Router(parse_pipeline(PIPELINE))
    for path, readable in [("/hits", True), ("/hooks", False), ("/v1/streams/hooks/events", True)]:
        matched = router.match(path)
        assert matched is not None
        assert EventReads.readable(matched[0], path) is readable, path


async def test_a_stream_no_lake_or_table_stores_is_not_queryable(data_dir: Path) -> None:
    pipeline = parse_pipeline(
        '{"sources": {"orders": {"type": "http"}}, "sinks": {"out": {"type": "s3", '
        '"inputs": ["orders"], "bucket": "b", "format": "ndjson"}}}'
    )
    sent = await read(pipeline, data_dir, "/v1/streams/orders/events")
    assert (sent.status, sent.json()["error"]) == (404, "not_queryable")


async def test_a_stream_stored_in_postgres_is_read_from_its_table(data_dir: Path) -> None:
    with throwaway_schema("Reads") as schema:
        pipeline = parse_pipeline(json.dumps({
            "sources": {"orders": {"type": "http"}},
            "sinks": {"db": {"type": "postgres", "inputs": ["orders"], "dsn": DSN,
                             "schema": schema, "table": "orders"}},
        }))  # fmt: skip
        sink = build_sink("db", pipeline.sinks["db"], data_dir)
        sink.open()
        try:
            batch = [event(f"e{n}", n) for n in range(5)]
            sink.write(batch, Checkpoint("db"))
        finally:
            sink.close()
        first = (await read(pipeline, data_dir, "/v1/streams/orders/events?limit=3")).json()
        assert [e["id"] for e in first["events"]] == ["e4", "e3", "e2"]  # newest first
        assert first["events"][0]["data"]["n"] == 4
        cursor = first["next_cursor"]
        rest = (await read(pipeline, data_dir, f"/v1/streams/orders/events?cursor={cursor}")).json()
        assert [e["id"] for e in rest["events"]] == ["e1", "e0"] and rest["next_cursor"] is None
        only = (await read(pipeline, data_dir, "/v1/streams/orders/events?n=2")).json()
        assert [e["id"] for e in only["events"]] == ["e2"]
        bad = await read(pipeline, data_dir, "/v1/streams/orders/events?cursor=x")
        assert (bad.status, bad.json()["error"]) == (400, "invalid_cursor")


async def test_an_unreachable_table_is_a_503(data_dir: Path) -> None:
    pipeline = parse_pipeline(json.dumps({
        "sources": {"orders": {"type": "http"}},
        "sinks": {"db": {"type": "postgres", "inputs": ["orders"], "table": "orders",
                         "dsn": "host=127.0.0.1 port=1 user=postgres connect_timeout=1"}},
    }))  # fmt: skip
    sent = await read(pipeline, data_dir, "/v1/streams/orders/events")
    assert (sent.status, sent.json()["error"]) == (503, "sink_unreachable")


async def test_a_stream_never_stored_is_unknown(data_dir: Path) -> None:
    sent = await read(default_pipeline(), data_dir, "/v1/streams/clickz/events")
    assert (sent.status, sent.json()["error"]) == (404, "unknown_stream")


async def test_a_source_path_reads_a_bounded_range(data_dir: Path) -> None:
    pipeline = parse_pipeline(PIPELINE)
    sent = await read(pipeline, data_dir, "/hits")
    assert sent.status == 200 and sent.json()["events"] == []


async def test_reads_need_the_credentials_and_a_loopback_host(data_dir: Path) -> None:
    tokens = ApiSettings.model_validate({"read_tokens": ["t"]})
    guarded = default_pipeline().model_copy(update={"api": tokens})
    refused = await read(guarded, data_dir, "/v1/streams/x/events")
    assert (refused.status, refused.json()["error"]) == (401, "unauthorized_read")
    rebinding = await read(
        default_pipeline(), data_dir, "/v1/streams/x/events", host="evil.example"
    )
    assert (rebinding.status, rebinding.json()["error"]) == (403, "misdirected_host")
