"""The dynamodb sink against a real moto server process."""

from __future__ import annotations

import base64
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from headrace.errors import TransientSinkError
from headrace.sinks.dynamodb.config import DynamoDBConfig as DynamoConfig
from headrace.sinks.dynamodb.sink import DynamoDBSink, item_size, to_attribute
from headrace.storage import state
from headrace.types import Event


def table_config(moto_url: str, **kw: Any) -> DynamoConfig:
    base: dict[str, Any] = {
        "type": "dynamodb", "inputs": ["web"], "table": f"hits-{uuid.uuid4().hex[:8]}",
        "partition_key": {"name": "pagePath"}, "sort_key": {"name": "timestamp", "type": "N"},
        "endpoint_url": moto_url, "create_table": True,
    }  # fmt: skip
    return DynamoConfig.model_validate({**base, **kw})


def scan(moto_url: str, table: str) -> list[dict[str, Any]]:
    resource = boto3.resource("dynamodb", endpoint_url=moto_url, region_name="us-east-1")
    return resource.Table(table).scan(ConsistentRead=True)["Items"]  # type: ignore[no-any-return]


def ev(i: int, **data: Any) -> Event:
    return Event(f"e{i}", "hits", "web", 1_763_800_000_000_000 + i, data)


def test_items_are_written_in_batches_with_exact_numbers_binary_and_nesting(
    moto_url: str, tmp_path: Path
) -> None:
    cfg = table_config(moto_url, binary_fields=["thumb"])
    sink = DynamoDBSink("hits", cfg, tmp_path)
    sink.open()  # creates the table
    events = [
        ev(i, pagePath=f"/p{i % 7}", timestamp=1_763_800_000_000 + i, ratio=0.1 + i,
           nested={"list": [1, "two", {"three": 3.5}], "flag": True, "none": None},
           thumb=base64.b64encode(bytes([i, 0, 255])).decode())
        for i in range(60)
    ]  # fmt: skip
    result = sink.write(events, state.Checkpoint("hits"))
    assert result.failed == []
    items = scan(moto_url, cfg.table)
    assert len(items) == 60
    item = next(x for x in items if x["timestamp"] == Decimal(1_763_800_000_000 + 3))
    assert item["ratio"] == Decimal("3.1")  # no float surprises: 0.1 + 3 written as 3.1
    assert item["nested"] == {"list": [Decimal(1), "two", {"three": Decimal("3.5")}],
                              "flag": True, "none": None}  # fmt: skip
    assert bytes(item["thumb"].value) == bytes([3, 0, 255])
    # redelivery rewrites the same items
    sink.write(events[:30], state.Checkpoint("hits"))
    assert len(scan(moto_url, cfg.table)) == 60


def test_refused_items_go_to_the_dead_letter_store_one_by_one(
    moto_url: str, tmp_path: Path
) -> None:
    cfg = table_config(moto_url)
    sink = DynamoDBSink("hits", cfg, tmp_path)
    sink.open()
    events = [
        ev(0, pagePath="/ok", timestamp=1),
        ev(1, pagePath="/big", timestamp=2, body="x" * 410_000),
        ev(2, timestamp=3),
        ev(3, pagePath="/p", timestamp="not a number"),
        ev(4, pagePath="/nan", timestamp=4, v=float("inf")),
        ev(5, pagePath="/ok", timestamp=1, v="later"),  # same key as e0 in one batch: e5 wins
    ]
    failed = {f.event.id: f.reason for f in sink.write(events, state.Checkpoint("hits")).failed}
    assert failed == {"e1": "item_too_large", "e2": "missing_key", "e3": "missing_key",
                      "e4": "unsupported_value"}  # fmt: skip
    (item,) = scan(moto_url, cfg.table)
    assert item["v"] == "later"


def test_a_missing_table_is_created_only_when_asked(moto_url: str, tmp_path: Path) -> None:
    sink = DynamoDBSink("hits", table_config(moto_url, create_table=False), tmp_path)
    with pytest.raises(TransientSinkError, match="does not exist"):
        sink.open()


def test_item_size_follows_dynamodb_rules() -> None:
    item = {"a": to_attribute("héllo"), "nn": to_attribute(12345), "m": to_attribute({"k": [True]})}
    # "a"(1)+6 bytes, "nn"(2)+ (5 digits -> 3+1), "m"(1) + 3 + "k"(1) + (3 + 1 + 1) + 1
    assert item_size(item) == 7 + 6 + 1 + 3 + 1 + 5 + 1


class _Throttled:
    """The real client, except the first calls leave half of their items unprocessed (as a busy
    table does; moto never does)."""

    def __init__(self, client: Any, times: int) -> None:
        self.client = client
        self.times = times
        self.calls = 0

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        self.calls += 1
        ((table, requests),) = RequestItems.items()
        if self.times > 0:
            self.times -= 1
            half = len(requests) // 2
            self.client.batch_write_item(RequestItems={table: requests[:half]})
            return {"UnprocessedItems": {table: requests[half:]}}
        return self.client.batch_write_item(RequestItems=RequestItems)  # type: ignore[no-any-return]


def test_unprocessed_items_are_retried_with_backoff(moto_url: str, tmp_path: Path) -> None:
    cfg = table_config(moto_url)
    sink = DynamoDBSink("hits", cfg, tmp_path)
    sink.open()
    sink.client = throttled = _Throttled(sink.client, times=3)
    events = [ev(i, pagePath="/a", timestamp=i) for i in range(25)]
    assert sink.write(events, state.Checkpoint("hits")).failed == []
    assert throttled.calls == 4
    assert len(scan(moto_url, cfg.table)) == 25
    # still unprocessed after max_attempts: the whole batch is retried later by the runtime
    sink.config = cfg.model_copy(update={"max_attempts": 2})
    sink.client = _Throttled(throttled.client, times=5)
    with pytest.raises(TransientSinkError, match="unprocessed"):
        sink.write(
            [ev(100 + i, pagePath="/b", timestamp=i) for i in range(10)], state.Checkpoint("hits")
        )
