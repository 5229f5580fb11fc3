"""Every dashboard view in headless Chromium over 200,000 page hits (plus thousands of dead
letters and bad rows), with screenshots and each view's load time printed.

The hits are written through the real lake sink, in time order and 20,000 at a time (about one
file per hour partition and batch, as delivery leaves them before compaction), with the
page-hits recipe's columns: skewed page popularity, real User-Agent strings, referrers (a third
direct), 20,000 visitor ids, a country. ``headrace serve`` runs the page-hits recipe over them.

Load time: from the navigation's start (a fresh page load) until the view has drawn its data
(``body[data-ready]``, set after the last chart and table of the view are in the page), read as
``performance.now()`` at that moment; beside it the summed duration of the view's API requests
(Resource Timing). Printed, never asserted: CI machines differ (``pytest -s`` shows them).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dashboard.conftest import artifact, show, write_lake
from dashboard.test_useragent import REAL
from headrace.recipes import PAGE_HITS
from headrace.storage import state
from headrace.storage.badrows import BadRowStore
from headrace.types import Event, FailedRecord
from support.serverproc import ServerProcess

Serve = Callable[..., ServerProcess]
DAY_US = 86_400_000_000
HITS = 200_000
RECENT = 170_000  # in the last 7 days; the rest in the 7 before (the previous period)
FIELDS = {"pagePath": "string", "referrer": "string", "userAgent": "string", "visitor": "string"}
REFERRERS = ["https://www.google.com/", "https://news.ycombinator.com/item?id=1",
             "https://www.reddit.com/r/python/", "https://t.co/abc", "https://duckduckgo.com/",
             "https://github.com/headrace", "https://blog.example.org/post/7"]  # fmt: skip


def page_hits(now: int) -> list[tuple[int, dict[str, Any]]]:
    """200,000 hits over 14 days, oldest first."""
    rnd = random.Random(12)
    agents = [text for text, _ in REAL]
    hits = []
    for i in range(HITS):
        age = rnd.randrange(7 * DAY_US) + (0 if i < RECENT else 7 * DAY_US)
        t = now - 1 - age
        hits.append((t, {
            "pagePath": f"/docs/{int(rnd.random() ** 3 * 400)}" if i % 4 else "/",
            "referrer": None if i % 3 == 0 else rnd.choice(REFERRERS),
            "userAgent": agents[int(rnd.random() ** 2 * len(agents))],
            "visitor": f"{rnd.randrange(20_000):016x}",
            "country": rnd.choice(["DE", "FR", "US", "GB", "IN", "BR", "JP", "NL"]),
            "timestamp": datetime.fromtimestamp(t / 1e6, UTC).isoformat().replace("+00:00", "Z"),
        }))  # fmt: skip
    hits.sort(key=lambda h: h[0])
    return hits


def failures(data_dir: Path, now: int) -> None:
    """3,000 dead letters over two sinks and 3,000 bad rows over two reasons."""
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    for sink, reason, count in (
        ("hits_lake", "type_mismatch", 2500),
        ("hits_db", "unknown_field", 500),
    ):
        failed = [FailedRecord(Event(f"{sink}-{i}", "analytics", "analytics", now - i * 1000,
                                     {"pagePath": 7, "i": i}),
                               reason, 'field "pagePath" is declared string; got int')
                  for i in range(count)]  # fmt: skip
        with conn:
            state.add_dead_letters(conn, sink, failed, 1)
    conn.close()
    rows = [("analytics", "analytics", "schema_violation" if i % 3 else "decode_error",
             "/pagePath" if i % 3 else "", "/pagePath: 7 is not of type 'string'", now - i * 1000,
             b'{"pagePath": 7}') for i in range(3000)]  # fmt: skip
    BadRowStore(data_dir).add(rows)


VIEWS = [
    ("overview, last hour", "", "overview"),
    ("overview, 7 days", "#/?range=7d", "overview"),
    ("explore, 24 h", "#/explore/analytics?range=24h", "explore"),
    ("explore, 7 days by country", "#/explore/analytics?range=7d&group_by=country", "explore"),
    ("page hits, 24 h", "#/pagehits?range=24h", "pagehits"),
    ("page hits, 7 days", "#/pagehits?range=7d", "pagehits"),
    ("page hits, 7 days, one page", "#/pagehits?range=7d&pagePath=%2F", "pagehits"),
    ("page hits, 30 days", "#/pagehits?range=30d", "pagehits"),
    ("dead letters", "#/deadletters", "deadletters"),
    ("dead letters of a sink, page 2", "#/deadletters?sink=hits_lake", "deadletters"),
    ("bad rows", "#/badrows", "badrows"),
    ("loads", "#/loads", "loads"),
]
API_TIME = """() => performance.getEntriesByType("resource")
  .filter(e => e.name.includes("/api/") || e.name.includes("/v1/"))
  .reduce((sum, e) => sum + e.duration, 0)"""


@pytest.mark.timeout(900)
def test_every_view_over_200k_hits(serve: Serve, page: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "data0"  # the data dir serve() will use
    now = time.time_ns() // 1000
    began = time.perf_counter()
    hits = page_hits(now)
    config = {"analytics": {"time_field": "timestamp", "fields": FIELDS}}
    write_lake(data_dir, "analytics", hits, sink_id="hits_lake", source="analytics",
               streams=config)  # fmt: skip
    failures(data_dir, now)
    files = len(list((data_dir / "lake").rglob("*.parquet")))
    print(f"\n{HITS:,} hits in {files} files, dead letters and bad rows: "
          f"{time.perf_counter() - began:.1f} s")  # fmt: skip
    server = serve(PAGE_HITS)

    week = [d for t, d in hits if t >= now - 7 * DAY_US]
    timings = []
    for name, route, view in VIEWS:
        show(page, f"{server.url}/{route}", view)
        ready = page.evaluate("window.headraceReadyAt")
        if name.endswith("page 2"):  # a later page: the keyset cursor, not an offset
            clicked = page.evaluate("performance.now()")
            page.click("#older-page")
            page.wait_for_selector(f"body[data-ready={view}]")
            ready = page.evaluate("window.headraceReadyAt") - clicked
        timings.append((name, ready, page.evaluate(API_TIME)))
        slug = name.replace(", ", "-").replace(" ", "-")
        page.screenshot(path=artifact(f"200k-{slug}.png"), full_page=True)
        if name == "page hits, 7 days":  # the range's start moves on with the clock: a little slack
            shown = int(page.inner_text("#hits-stats [data-stat=hits] b").replace(",", ""))
            assert abs(shown - len(week)) <= 60, (shown, len(week))
            seen = int(page.inner_text("#hits-stats [data-stat=visitors] b").replace(",", ""))
            assert abs(seen - len({d["visitor"] for d in week})) <= 20
        if name == "dead letters":
            assert page.inner_text("#failure-total") == "3,000 pending"
        if view == "badrows":
            assert page.inner_text("#failure-total") == "3,000 pending"
    print(f"{'view':<34} {'ready ms':>9} {'api ms':>8}")
    for name, ready, api in timings:
        print(f"{name:<34} {ready:>9.0f} {api:>8.0f}")
