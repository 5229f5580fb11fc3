"""The dashboard's dead-letter and bad-row pages: a total, filters with their choices, pages
past the first 200, the failure time and the failing field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.conftest import app_client
from headrace.storage import state
from headrace.storage.badrows import BadRowStore
from headrace.types import Event, FailedRecord

T0 = 1_763_800_000_000_000


def dead_letters(data_dir: Path, sink: str, reason: str, count: int, start: int = 0) -> None:
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    failed = [
        FailedRecord(Event(f"{sink}-{start + i}", "orders", "shop", T0 + i, {"total": "lots"}),
                     reason, 'field "total" is declared float64; got str')
        for i in range(count)
    ]  # fmt: skip
    with conn:
        state.add_dead_letters(conn, sink, failed, 3)
    conn.close()


async def get(http: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.anyio
async def test_dead_letters_total_pages_filters_and_choices(data_dir: Path) -> None:
    dead_letters(data_dir, "lake", "type_mismatch", 250)
    dead_letters(data_dir, "db", "unknown_field", 5, start=1000)
    async with app_client(data_dir) as http:
        first = await get(http, "/api/dashboard/deadletters", limit="200")
        assert first["total"] == 255 and len(first["rows"]) == 200
        newest = first["rows"][0]
        assert newest["sink"] == "db" and newest["failed_at_us"] > T0  # newest first
        ids = [r["id"] for r in first["rows"]]
        assert ids == sorted(ids, reverse=True)
        rest = await get(http, "/api/dashboard/deadletters", limit="200",
                         before=str(first["next_before"]))  # fmt: skip
        assert len(rest["rows"]) == 55 and rest["next_before"] is None
        assert not set(ids) & {r["id"] for r in rest["rows"]}

        assert first["choices"]["sink"] == [
            {"value": "lake", "count": 250},
            {"value": "db", "count": 5},
        ]
        only_db = await get(http, "/api/dashboard/deadletters", sink="db")
        assert only_db["total"] == 5 and {r["sink"] for r in only_db["rows"]} == {"db"}
        # a filter's own choices stay all there; the others narrow to it
        assert len(only_db["choices"]["sink"]) == 2
        assert only_db["choices"]["reason"] == [{"value": "unknown_field", "count": 5}]
        none = await get(http, "/api/dashboard/deadletters", sink="db", reason="type_mismatch")
        assert none["total"] == 0 and none["rows"] == []

        row = newest
        assert row["field_path"] == "/total" and row["attempts"] == 3
        assert '"lots"' in row["body"] and row["body_cut"] is False
        whole = await get(http, f"/api/dashboard/deadletters/{row['id']}")
        assert whole["event_id"] == row["event_id"]
        assert (await http.get("/api/dashboard/deadletters/999999")).status_code == 404
        bad = await http.get("/api/dashboard/deadletters", params={"limit": "0"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_parameter"


@pytest.mark.anyio
async def test_bad_rows_show_the_failing_path_and_hide_replayed_ones(data_dir: Path) -> None:
    store = BadRowStore(data_dir)
    big = b'{"pagePath": 7, "blob": "' + b"x" * 5000 + b'"}'
    store.add([("analytics", "analytics", "schema_violation", "/pagePath",
                "/pagePath: 7 is not of type 'string'", T0 + i, big) for i in range(3)])  # fmt: skip
    store.add([("events", "shop", "decode_error", "", "invalid JSON", T0 + 10, b"{nope")])
    store.mark_replayed([1])
    async with app_client(data_dir) as http:
        listed = await get(http, "/api/dashboard/badrows")
        assert listed["total"] == 3  # the replayed one is not pending
        assert [r["id"] for r in listed["rows"]] == [4, 3, 2]
        schema_row = listed["rows"][1]
        assert schema_row["field_path"] == "/pagePath" and schema_row["failed_at_us"] == T0 + 2
        assert schema_row["body_cut"] is True and len(schema_row["body"]) == 2000
        assert listed["rows"][0]["field_path"] is None  # a body that is no JSON has no path
        assert listed["choices"]["source"] == [
            {"value": "analytics", "count": 2},
            {"value": "events", "count": 1},
        ]
        everything = await get(http, "/api/dashboard/badrows", replayed="true")
        assert everything["total"] == 4
        whole = await get(http, "/api/dashboard/badrows/3")
        assert len(whole["body"]) == len(big) and whole["raw_bytes"] == len(big)
        by_reason = await get(http, "/api/dashboard/badrows", reason="decode_error")
        assert by_reason["total"] == 1 and by_reason["rows"][0]["stream"] == "shop"


@pytest.mark.anyio
async def test_no_failures_yet(data_dir: Path) -> None:
    async with app_client(data_dir) as http:
        for kind in ("deadletters", "badrows"):
            doc = await get(http, f"/api/dashboard/{kind}")
            assert doc["total"] == 0 and doc["rows"] == [] and doc["next_before"] is None
