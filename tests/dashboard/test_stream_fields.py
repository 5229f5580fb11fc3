"""What the Explore and Overview controls are built from: which fields a chart can be grouped
by, the order (and so the colours) of grouped series, and the overview's time range."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.conftest import app_client, write_lake

MIN = 60_000_000


def shop_events(now: int) -> list[tuple[int, dict[str, Any]]]:
    events = []
    for i in range(60):
        action = "view" if i < 30 else "click" if i < 50 else "buy"
        events.append((now - (i + 1) * MIN, {
            "action": action, "n": i, "requestid": f"req-{i:04d}", "vip": i % 4 == 0,
            "note": "same", "country": "DE" if i % 2 else "FR", "created_at": 1_767_225_600_000 + i,
            "code": "10" if i < 35 else "2" if i < 55 else "1",
        }))  # fmt: skip
    return events


async def get(http: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.anyio
async def test_only_low_cardinality_text_and_booleans_are_groupable(data_dir: Path) -> None:
    now = time.time_ns() // 1000
    write_lake(data_dir, "shop", shop_events(now))
    async with app_client(data_dir) as http:
        doc = await get(http, "/api/dashboard/streams/shop/fields")
    fields = {f["name"]: f for f in doc["fields"]}
    groupable = sorted(name for name, f in fields.items() if f["groupable"])
    assert groupable == ["action", "code", "country", "vip"]
    assert fields["action"]["distinct"] == 3 and fields["action"]["type"] == "string"
    assert fields["requestid"]["groupable"] is False  # unique: an id, not a group
    assert fields["note"]["groupable"] is False  # one value: no split
    assert fields["n"]["distinct"] is None and fields["created_at"]["groupable"] is False


@pytest.mark.anyio
async def test_grouped_series_come_biggest_first_whatever_their_names(data_dir: Path) -> None:
    now = time.time_ns() // 1000
    write_lake(data_dir, "shop", shop_events(now))
    async with app_client(data_dir) as http:
        by_action = await get(http, "/api/dashboard/streams/shop/counts", group_by="action")
        by_code = await get(http, "/api/dashboard/streams/shop/counts", group_by="code")
        top_two = await get(http, "/api/dashboard/streams/shop/counts", group_by="n")
    assert by_action["groups"] == [
        {"name": "view", "total": 30},
        {"name": "click", "total": 20},
        {"name": "buy", "total": 10},
    ]
    # a browser lists an object's keys "1", "2", "10" first, in number order: the list keeps
    # the order by volume
    assert [g["name"] for g in by_code["groups"]] == ["10", "2", "1"]
    assert top_two["groups"][-1] == {"name": "(other)", "total": 52}  # 8 kept, the rest after


@pytest.mark.anyio
async def test_the_overview_counts_arrivals_over_the_asked_range(data_dir: Path) -> None:
    now = time.time_ns() // 1000
    write_lake(data_dir, "shop", [(now - 3 * 60 * MIN, {"a": 1}), (now - 30 * MIN, {"a": 2})])
    async with app_client(data_dir) as http:
        hour = await get(http, "/api/dashboard/overview")
        six = await get(http, "/api/dashboard/overview", since=str((now - 6 * 60 * MIN) // 1000))
        edge = await get(http, "/api/dashboard/overview", since=str((now - 30 * MIN) // 1000))
    (panel,) = hour["streams"]
    # whole minutes from the one the hour starts in: 61, the first counted from the hour's start
    assert panel["received"] == 1 and len(panel["arrivals"]) == 61 and panel["bucket_seconds"] == 60
    (wide,) = six["streams"]
    assert wide["received"] == 2 and wide["bucket_seconds"] == 900
    assert len(wide["times"]) == len(wide["arrivals"]) in (24, 25)
    assert wide["times"][-1] * 1_000_000 <= now < (wide["times"][-1] + 900) * 1_000_000
    assert wide["times"][0] * 1_000_000 <= six["since_us"] < (wide["times"][0] + 900) * 1_000_000
    assert edge["streams"][0]["received"] == 1  # the event 30 minutes ago counts, not earlier
