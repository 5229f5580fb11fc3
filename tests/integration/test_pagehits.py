"""The page-hit job end to end: ``headrace init --recipe page-hits``, POST and GET /analytics."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from support.serverproc import ServerProcess


def hits(server: ServerProcess, **params: str) -> httpx.Response:
    return httpx.get(f"{server.url}/analytics", params=params, timeout=10)


def wait_for_hits(server: ServerProcess, count: int, **params: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        found = hits(server, limit="1000", **params).json()["events"]
        if len(found) >= count or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.1)


def test_page_hits_recipe(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    subprocess.run(
        [sys.executable, "-m", "headrace.cli", "init", "--recipe", "page-hits", "-o", str(config)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = ServerProcess(tmp_path / "data", config=config, workers=1).start()
    try:
        server.wait_ready()
        now = datetime.now(UTC).replace(microsecond=0)
        old = (now - timedelta(days=3)).isoformat().replace("+00:00", "Z")
        sent = [
            {"pagePath": "/pricing", "referrer": "https://a.example/", "plan": "pro"},
            {
                "pagePath": "/pricing",
                "timestamp": int((now - timedelta(minutes=5)).timestamp() * 1000),
            },
            {"pagePath": "/docs", "timestamp": old},
        ]
        for hit in sent:
            response = httpx.post(f"{server.url}/analytics", json=hit,
                                  headers={"User-Agent": "pytest-agent"}, timeout=10)  # fmt: skip
            assert response.status_code == 202, response.text
        refused = httpx.post(f"{server.url}/analytics", json={"referrer": "x"}, timeout=10)
        assert refused.status_code == 400 and refused.json()["error"] == "schema_violation"

        # default range: the last 24 h, newest first; the key is (pagePath, timestamp)
        recent = wait_for_hits(server, 2)
        assert [h["data"]["pagePath"] for h in recent] == ["/pricing", "/pricing"]
        newest = recent[0]["data"]
        assert newest["plan"] == "pro" and newest["userAgent"] == "pytest-agent"
        stamped = datetime.fromisoformat(newest["timestamp"])  # defaulted to the receive time
        assert abs((stamped - datetime.now(UTC)).total_seconds()) < 60
        assert recent[0]["time"] == newest["timestamp"]

        week = (now - timedelta(days=7)).isoformat()
        everything = wait_for_hits(server, 3, since=week)
        assert [h["data"]["pagePath"] for h in everything] == ["/pricing", "/pricing", "/docs"]
        docs = hits(server, since=week, pagePath="/docs").json()["events"]
        assert [h["data"]["timestamp"] for h in docs] == [old]

        first = hits(server, since=week, limit="2").json()
        assert len(first["events"]) == 2 and first["next_cursor"]
        rest = hits(server, since=week, limit="2", cursor=first["next_cursor"]).json()
        assert [h["data"]["pagePath"] for h in rest["events"]] == ["/docs"]
        assert rest["next_cursor"] is None

        too_wide = hits(server, since="2020-01-01T00:00:00Z")
        assert too_wide.status_code == 400 and too_wide.json()["error"] == "range_too_wide"
        backwards = hits(server, since=now.isoformat(), until=week)
        assert backwards.status_code == 400 and backwards.json()["error"] == "invalid_range"
        assert hits(server, limit="5000").json()["error"] == "invalid_limit"

        stats = httpx.get(f"{server.url}/api/dashboard/pagehits",
                          params={"since": week}, timeout=10).json()  # fmt: skip
        assert stats["total"] == 3
        assert stats["top_pages"] == [
            {"value": "/pricing", "count": 2, "distinct": 1},  # hits, and visitors
            {"value": "/docs", "count": 1, "distinct": 1},
        ]
        assert stats["top_referrers"][0]["value"] == "Direct / None"
        assert stats["top_referrers"][0]["count"] == 2
        # one address and one User-Agent, received today: one visitor, whose address is not kept
        assert stats["visitors"] == 1
        assert all(len(h["data"]["visitor"]) == 16 for h in everything)
        assert all("127.0.0.1" not in str(h["data"]) for h in everything)
        other = httpx.post(f"{server.url}/analytics", json={"pagePath": "/pricing"},
                           headers={"User-Agent": "another-agent"}, timeout=10)  # fmt: skip
        assert other.status_code == 202
        # a server sending hits for its users names the visitor itself: kept as sent
        own = httpx.post(f"{server.url}/analytics", json={"pagePath": "/", "visitor": "user-7"},
                         timeout=10)  # fmt: skip
        assert own.status_code == 202
        found = wait_for_hits(server, 5, since=week)
        assert [h["data"]["visitor"] for h in found if h["data"]["pagePath"] == "/"] == ["user-7"]
        stats = httpx.get(f"{server.url}/api/dashboard/pagehits",
                          params={"since": week}, timeout=10).json()  # fmt: skip
        assert stats["total"] == 5 and stats["visitors"] == 3
    finally:
        server.stop()


def test_page_hits_recipe_on_dynamodb(
    tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /analytics answers from the DynamoDB table with a Query on (pagePath, timestamp)."""
    from support.motoserver import AWS_ENV

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    table = f"page-hits-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PAGE_HITS_TABLE", table)
    config = tmp_path / "pipeline.yaml"
    subprocess.run(
        [sys.executable, "-m", "headrace.cli", "init", "--recipe", "page-hits-dynamodb", "-o",
         str(config)], check=True, capture_output=True,
    )  # fmt: skip
    server = ServerProcess(tmp_path / "data", config=config, workers=1).start()
    try:
        server.wait_ready()
        now = datetime.now(UTC).replace(microsecond=0)
        base_ms = int((now - timedelta(minutes=30)).timestamp() * 1000)
        sent = [{"pagePath": "/pricing", "timestamp": base_ms + i * 1000, "n": i} for i in range(7)]
        sent += [
            {"pagePath": "/docs", "timestamp": (now - timedelta(days=2)).isoformat()},
            {"pagePath": "/pricing", "referrer": "https://a.example/", "price": 0.1},  # now
        ]
        for hit in sent:
            response = httpx.post(f"{server.url}/analytics", json=hit, timeout=10)
            assert response.status_code == 202, response.text

        # the items as stored, read by a client of our own
        dynamo = boto3.client("dynamodb", endpoint_url=moto_url)
        deadline = time.monotonic() + 30
        while dynamo.scan(TableName=table, Select="COUNT")["Count"] < 9:
            assert time.monotonic() < deadline, "the hits did not reach the table"
            time.sleep(0.2)
        item = dynamo.get_item(TableName=table, Key={"pagePath": {"S": "/pricing"},
                                                     "timestamp": {"N": str(base_ms)}})["Item"]  # fmt: skip
        assert item["n"] == {"N": "0"} and item["userAgent"]["S"].startswith("python-httpx")

        newest = hits(server, pagePath="/pricing").json()  # the last 24 h by default
        assert [h["data"].get("n") for h in newest["events"]] == [None, 6, 5, 4, 3, 2, 1, 0]
        assert newest["events"][0]["data"]["price"] == 0.1  # a number, exactly as sent
        assert newest["events"][1]["time"] == datetime.fromtimestamp(
            (base_ms + 6000) / 1000, tz=UTC
        ).isoformat().replace("+00:00", "Z")
        assert newest["next_cursor"] is None

        pages, cursor = [], None
        while True:  # three at a time, newest first, through the cursor
            params = {
                "pagePath": "/pricing",
                "limit": "3",
                **({"cursor": cursor} if cursor else {}),
            }
            page = hits(server, **params).json()
            pages.append([h["data"].get("n") for h in page["events"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [n for p in pages for n in p] == [None, 6, 5, 4, 3, 2, 1, 0]
        assert all(len(p) <= 3 for p in pages)

        ranged = hits(server, pagePath="/pricing", since=str(base_ms + 2000),
                      until=str(base_ms + 5000)).json()  # fmt: skip
        assert [h["data"]["n"] for h in ranged["events"]] == [4, 3, 2]
        filtered = hits(server, pagePath="/pricing", n="3").json()
        assert [h["data"]["n"] for h in filtered["events"]] == [3]
        assert hits(server, pagePath="/docs").json()["events"] == []  # older than 24 h
        week = (now - timedelta(days=7)).isoformat()
        assert len(hits(server, pagePath="/docs", since=week).json()["events"]) == 1

        no_key = hits(server)
        assert no_key.status_code == 400 and no_key.json()["error"] == "missing_parameter"
        bad_cursor = hits(server, pagePath="/pricing", cursor="bm90IGEgY3Vyc29y")
        assert bad_cursor.status_code == 400 and bad_cursor.json()["error"] == "invalid_cursor"
        too_wide = hits(server, pagePath="/pricing", since="2020-01-01T00:00:00Z")
        assert too_wide.status_code == 400 and too_wide.json()["error"] == "range_too_wide"

        # the dashboard still charts the hits, from the lake
        stats = httpx.get(f"{server.url}/api/dashboard/pagehits",
                          params={"since": week}, timeout=10).json()  # fmt: skip
        assert stats["total"] == 9
    finally:
        server.stop()
