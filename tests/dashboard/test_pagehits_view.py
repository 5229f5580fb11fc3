"""The page-hits view's numbers, over hits stored by the real lake sink: unique visitors, the
previous period, referrer domains with "Direct / None", browsers and devices, and filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.conftest import app_client, write_lake

HOUR = 3_600_000_000
END = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
WINDOW = {"since": "2025-12-31T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"
)


def hit(hours_ago: float, page: str, visitor: str, referrer: str | None, agent: str | None) -> Any:
    data = {"pagePath": page, "visitor": visitor, "referrer": referrer, "userAgent": agent}
    return (END - int(hours_ago * HOUR), {k: v for k, v in data.items() if v is not None})


HITS = [
    hit(1, "/pricing", "a", "https://www.News.example/story?id=1", CHROME),
    hit(2, "/pricing", "a", "https://news.example/other", CHROME),
    hit(3, "/pricing", "b", "https://blog.example:8443/post#top", IPHONE),
    hit(4, "/", "c", None, IPHONE),
    (
        END - 5 * HOUR,
        {
            "pagePath": "/",
            "visitor": "d",
            "referrer": "",
            "userAgent": CHROME,
            "event": "page_view",
        },
    ),
    hit(6, "/docs", "a", "not a url", None),
    # the tracker's page view is a hit; its clicks (same stream, same page) are not
    (
        END - 7 * HOUR,
        {"pagePath": "/", "visitor": "a", "event": "add_to_cart", "userAgent": CHROME},
    ),
    (
        END - 8 * HOUR,
        {"pagePath": "/", "visitor": "f", "event": "signup", "referrer": "https://x.example/"},
    ),
    # the previous 24 hours
    hit(30, "/", "e", None, CHROME),
    hit(40, "/", "e", None, CHROME),
]
FIELDS = {
    "pagePath": "string",
    "referrer": "string",
    "userAgent": "string",
    "visitor": "string",
    "event": "string",
}


async def pagehits(http: httpx.AsyncClient, *extra: tuple[str, str]) -> Any:
    response = await http.get(
        "/api/dashboard/pagehits", params=[("stream", "analytics"), *WINDOW.items(), *extra]
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.anyio
async def test_page_hits_numbers(data_dir: Path) -> None:
    write_lake(data_dir, "analytics", HITS, streams={"analytics": {"fields": FIELDS}})
    async with app_client(data_dir) as http:
        doc = await pagehits(http)
    assert doc["total"] == 6 and doc["visitors"] == 4
    assert sum(doc["series"]["hits"]) == 6 and len(doc["series"]["visitors"]) == len(doc["times"])
    assert max(doc["series"]["visitors"]) == 1  # one visitor an hour (15-minute buckets)
    previous = doc["previous"]
    assert previous["total"] == 2 and previous["visitors"] == 1
    assert sum(previous["series"]["hits"]) == 2
    assert len(previous["series"]["hits"]) == len(doc["times"])
    assert doc["top_pages"] == [
        {"value": "/pricing", "count": 3, "distinct": 2},
        {"value": "/", "count": 2, "distinct": 2},
        {"value": "/docs", "count": 1, "distinct": 1},
    ]
    assert doc["top_referrers"] == [
        {"value": "Direct / None", "count": 3, "distinct": 3, "filter": "(direct)"},
        {"value": "news.example", "count": 2, "distinct": 1, "filter": "news.example"},
        {"value": "blog.example", "count": 1, "distinct": 1, "filter": "blog.example"},
    ]
    assert doc["browsers"] == [
        {"value": "Chrome", "count": 3},
        {"value": "Safari", "count": 2},
        {"value": "Unknown", "count": 1},
    ]
    assert doc["devices"][:2] == [
        {"value": "Desktop", "count": 3},
        {"value": "Mobile", "count": 2},
    ]
    assert {s["value"] for s in doc["systems"]} == {"Windows", "iOS", "Unknown"}
    assert doc["ingest_path"] == "/v1/streams/analytics/events"


@pytest.mark.anyio
async def test_a_page_or_a_referrer_domain_filters_every_number(data_dir: Path) -> None:
    write_lake(data_dir, "analytics", HITS, streams={"analytics": {"fields": FIELDS}})
    async with app_client(data_dir) as http:
        news = await pagehits(http, ("referrer_domain", "news.example"))
        assert news["total"] == 2 and news["visitors"] == 1
        assert news["top_pages"] == [{"value": "/pricing", "count": 2, "distinct": 1}]
        assert news["filters"] == [["referrer_domain", "news.example"]]
        direct = await pagehits(http, ("referrer_domain", "(direct)"))
        assert direct["total"] == 3 and direct["previous"]["total"] == 2
        pricing = await pagehits(http, ("pagePath", "/pricing"))
        assert pricing["total"] == 3 and pricing["visitors"] == 2
        assert [r["value"] for r in pricing["top_referrers"]] == ["news.example", "blog.example"]
        both = await pagehits(http, ("pagePath", "/pricing"), ("referrer_domain", "blog.example"))
        assert both["total"] == 1 and both["browsers"] == [{"value": "Safari", "count": 1}]


@pytest.mark.anyio
async def test_hits_without_visitor_ids_count_hits_only(data_dir: Path) -> None:
    plain = [(t, {k: v for k, v in d.items() if k != "visitor"}) for t, d in HITS]
    write_lake(data_dir, "analytics", plain)
    async with app_client(data_dir) as http:
        doc = await pagehits(http)
    assert doc["total"] == 6 and doc["visitors"] is None and "visitors" not in doc["series"]
    assert doc["top_pages"][0] == {"value": "/pricing", "count": 3}
