from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.records import expand_events
from headrace.config.load import parse_pipeline
from headrace.errors import ConfigError
from headrace.server.app import WorkerApp
from headrace.storage.api_keys import KeyStore

PIPELINE = json.dumps({
    "sources": {"orders": {
        "type": "http", "id_field": "order_id",
        "auth": {"type": "api_key"},
        "map": {
            "select": ["order_id", "amt", "secret", "note"],
            "rename": {"amt": "amount"},
            "drop": ["secret"],
            "set": {"system": "shop"},
            "copy": {"ip": "$client_ip", "agent": "$header.User-Agent", "by": "$principal", "stream": "$stream"},
        },
    }},
    "sinks": {"lake": {"type": "lake", "inputs": ["orders"]}},
})  # fmt: skip


@pytest.mark.anyio
async def test_the_map_reshapes_events_and_copies_request_metadata(data_dir: Path) -> None:
    _, key = KeyStore(data_dir).create("orders", "checkout", None)
    app = WorkerApp(parse_pipeline(PIPELINE), data_dir)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            sent = {"order_id": 7, "amt": 12.5, "secret": "x", "noise": True}
            response = await client.post("/v1/streams/orders/events", json=sent,
                                         headers={"x-api-key": key, "user-agent": "shop/1.0"})  # fmt: skip
            assert response.status_code == 202
            assert response.json()["ids"] == ["7"]  # id_field reads the event as sent
    finally:
        await app.shutdown()
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 20).items
    (event,) = [e for item in items for e in expand_events(item.request)]
    assert event.data == {"order_id": 7, "amount": 12.5, "system": "shop", "ip": "203.0.113.9",
                          "agent": "shop/1.0", "by": "checkout", "stream": "orders"}  # fmt: skip


def test_unknown_metadata_is_a_config_error() -> None:
    bad = PIPELINE.replace('"$stream"', '"$nope"')
    with pytest.raises(ConfigError) as info:
        parse_pipeline(bad)
    (problem,) = info.value.problems
    assert (
        problem.path == "sources.orders.map.copy"
        and '"$nope" is not request metadata' in problem.message
    )


def test_defaults_fill_only_missing_or_null_fields() -> None:
    from headrace.config.sources import EventMap
    from headrace.ingest.mapping import Mapper, RequestMeta

    mapper = Mapper(
        EventMap(defaults={"timestamp": "$received_at", "userAgent": "$header.User-Agent"})
    )
    assert mapper.header_names == frozenset({b"user-agent"})
    meta = RequestMeta("s", "src", None, None, 1_800_000_000_000_000, {"user-agent": "ua/1"})
    assert mapper.apply({"a": 1}, meta) == {
        "a": 1, "timestamp": "2027-01-15T08:00:00Z", "userAgent": "ua/1"
    }  # fmt: skip
    given = {"timestamp": 5, "userAgent": None}
    assert mapper.apply(given, meta) == {"timestamp": 5, "userAgent": "ua/1"}
    with pytest.raises(ValueError, match="not request metadata"):
        EventMap(defaults={"x": "$nope"})
