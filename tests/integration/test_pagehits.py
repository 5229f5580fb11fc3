"""The page-hit job end to end: ``headrace init --recipe page-hits``, POST and GET /analytics."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from serverproc import ServerProcess


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
            {"value": "/pricing", "count": 2},
            {"value": "/docs", "count": 1},
        ]
        assert stats["top_referrers"][0] == {"value": "(none)", "count": 2}
    finally:
        server.stop()
