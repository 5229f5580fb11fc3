"""The page-hits, dead-letter, bad-row and loads views, the empty states and the icon, in
headless Chromium. Every test fails on any console error (the ``page`` fixture)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from dashboard.conftest import artifact, canvas_ink, drawn, legend, show, wait_until, write_lake
from headrace.recipes import PAGE_HITS
from headrace.storage import state
from headrace.storage.badrows import BadRowStore
from headrace.types import Event, FailedRecord
from support.serverproc import ServerProcess

Serve = Callable[..., ServerProcess]
DASH = "\u2013"  # an en dash, as in the page's "1\u201350 of 255"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"
)


def send_hits(server: ServerProcess) -> int:
    """Hits through the page-hits recipe's own path; returns how many."""
    old = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    hits = [
        ("/pricing", "https://www.news.example/a", CHROME, None),
        ("/pricing", "https://news.example/b", CHROME, None),
        ("/pricing", None, FIREFOX, None),
        ("/", None, IPHONE, None),
        ("/", "https://blog.example/post", IPHONE, None),
        ("/docs", "https://news.example/c", FIREFOX, None),
        ("/", None, CHROME, old),  # the previous 24 hours
    ]
    for path, referrer, agent, at in hits:
        body = {"pagePath": path, "referrer": referrer, **({"timestamp": at} if at else {})}
        sent = httpx.post(f"{server.url}/analytics", json=body, headers={"User-Agent": agent})
        assert sent.status_code == 202, sent.text
    return len(hits)


def stat(page: Any, name: str) -> str:
    return str(page.inner_text(f"#hits-stats [data-stat={name}] b"))


def test_page_hits_visitors_referrers_devices_and_filters(serve: Serve, page: Any) -> None:
    server = serve(PAGE_HITS)
    sent = send_hits(server)
    since = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    wait_until(
        lambda: (
            httpx.get(f"{server.url}/api/dashboard/pagehits", params={"since": since}).json()[
                "total"
            ]
            == sent
        ),
        what="the hits delivered",
    )
    show(page, f"{server.url}/#/pagehits?range=24h", "pagehits")
    assert stat(page, "hits") == "6"
    assert stat(page, "visitors") == "3"  # one address, three browsers: three visitors
    assert "▲ 500%" in page.inner_text("#hits-stats [data-stat=hits]")  # 6 against 1
    assert canvas_ink(page, "#hits-chart") > 100
    names = [name for name, _ in legend(page, "#hits-chart")]
    assert names == ["hits", "visitors", "hits, previous period"]
    assert page.inner_text("#top-referrers tr.clickable >> nth=0").startswith("news.example\t3")
    assert "Direct / None\t2" in page.inner_text("#top-referrers")
    assert "Chrome\t2" in page.inner_text("#browsers") and "Firefox\t2" in page.inner_text(
        "#browsers"
    )
    assert "Mobile\t2" in page.inner_text("#devices") and "Desktop\t4" in page.inner_text(
        "#devices"
    )
    assert "iOS\t2" in page.inner_text("#systems")
    page.screenshot(path=artifact("pagehits-recipe.png"), full_page=True)

    page.click("#top-pages tr[data-value='/pricing']")  # a top page filters the view
    drawn(page, "pagehits")
    assert "page: /pricing" in page.inner_text("#hit-filters")
    assert stat(page, "hits") == "3" and stat(page, "visitors") == "2"
    page.click("#top-referrers tr[data-value='news.example']")  # and a referrer, on top of it
    drawn(page, "pagehits")
    assert stat(page, "hits") == "2" and "referrer: news.example" in page.inner_text("#hit-filters")
    assert "referrer_domain=news.example" in page.url  # a filtered view is a link
    page.click("#hit-filters .chip:has-text('page') button")
    drawn(page, "pagehits")
    assert stat(page, "hits") == "3"  # news.example on every page
    page.click("#hit-filters .chip button")
    drawn(page, "pagehits")
    page.click("#top-referrers tr[data-value='(direct)']")
    drawn(page, "pagehits")
    assert stat(page, "hits") == "2" and "referrer: Direct / None" in page.inner_text(
        "#hit-filters"
    )


def test_empty_views_say_what_to_do(serve: Serve, page: Any, tmp_path: Path) -> None:
    three_days = time.time_ns() // 1000 - 3 * 24 * 3_600_000_000
    write_lake(tmp_path / "data0", "archive", [(three_days, {"n": 1})], source="archive")
    server = serve(
        """
sources:
  events: {type: http, path: "/v1/streams/{stream}/events"}
  archive: {type: http}
sinks:
  lake: {type: lake, inputs: [events, archive]}
"""
    )
    show(page, f"{server.url}/#/pagehits", "pagehits")
    assert 'Nothing has been sent to the stream "analytics"' in page.inner_text("#hits-unknown")
    snippet = page.inner_text("#snippet")
    assert f'<script src="{server.url}/sdk/headrace.js"></script>' in snippet
    assert 'stream: "analytics"' in snippet
    assert f"curl -X POST {server.url}/v1/streams/analytics/events" in page.inner_text("#curl")
    page.screenshot(path=artifact("pagehits-empty.png"), full_page=True)

    show(page, f"{server.url}/#/explore/archive", "explore")  # the last 24 h: nothing
    assert "No events between" in page.inner_text("#count-empty")
    page.click("#show-newest")
    drawn(page, "explore")
    assert page.inner_text("#count-total").startswith("1 event,")
    assert "range=7d" in page.url
    for view, selector, text in [
        ("deadletters", "#failures-empty", "No dead letters"),
        ("badrows", "#failures-empty", "No bad rows"),
        ("loads", "#loads-empty", "No load jobs yet"),
    ]:
        show(page, f"{server.url}/#/{view}", view)
        assert text in page.inner_text(selector)


def test_an_empty_overview_shows_how_to_send_the_first_event(serve: Serve, page: Any) -> None:
    server = serve()
    show(page, f"{server.url}/", "overview")
    assert f"curl -X POST {server.url}/v1/streams/clicks/events" in page.inner_text(
        "#streams-empty"
    )


def dead_letters(data_dir: Path, sink: str, reason: str, count: int, start: int = 0) -> None:
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    now = time.time_ns() // 1000
    failed = [
        FailedRecord(Event(f"{sink}-{start + i}", "orders", "shop", now - i, {"total": "lots", "i": i}),
                     reason, 'field "total" is declared float64; got str')
        for i in range(count)
    ]  # fmt: skip
    with conn:
        state.add_dead_letters(conn, sink, failed, 1)
    conn.close()


def test_dead_letters_and_bad_rows_have_totals_pages_and_filters(
    serve: Serve, page: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data0"
    dead_letters(data_dir, "lake", "type_mismatch", 250)
    dead_letters(data_dir, "db", "unknown_field", 5, start=1000)
    bad = BadRowStore(data_dir)
    now = time.time_ns() // 1000
    bad.add([("analytics", "analytics", "schema_violation", "/pagePath",
              "/pagePath: 7 is not of type 'string'", now - i, b'{"pagePath": 7}') for i in range(60)])  # fmt: skip
    server = serve()

    show(page, f"{server.url}/#/deadletters", "deadletters")
    assert page.inner_text("#failure-total") == "255 pending"
    assert len(page.query_selector_all("#deadletters tr.clickable")) == 50
    assert page.inner_text("#failure-range") == f"1{DASH}50 of 255"
    first_row = page.inner_text("#deadletters tr.clickable >> nth=0")
    assert "/total" in first_row and "unknown_field" in first_row  # the newest first
    assert page.query_selector("#deadletters tr.clickable td.time").get_attribute("title")
    page.click("#older-page")
    drawn(page, "deadletters")
    assert page.inner_text("#failure-range") == f"51{DASH}100 of 255"
    page.click("#newer-page")
    drawn(page, "deadletters")
    assert page.inner_text("#failure-range") == f"1{DASH}50 of 255"
    page.select_option("#filter-sink", "db")
    drawn(page, "deadletters")
    assert page.inner_text("#failure-total") == "5 pending matching"
    assert len(page.query_selector_all("#deadletters tr.clickable")) == 5
    page.click("#deadletters tr.clickable >> nth=0")
    page.wait_for_selector("#row-json:has-text('lots')")
    assert '"event_id": "db-1004"' in page.inner_text("#row-json")
    page.screenshot(path=artifact("deadletters.png"), full_page=True)

    show(page, f"{server.url}/#/badrows?source=analytics", "badrows")
    assert page.inner_text("#failure-total") == "60 pending matching"
    assert page.inner_text("#failure-range") == f"1{DASH}50 of 60"
    assert page.inner_text("#badrows tr.clickable >> nth=0 >> td.path") == "/pagePath"
    page.click("#older-page")
    drawn(page, "badrows")
    assert page.inner_text("#failure-range") == f"51{DASH}60 of 60"
    assert page.get_attribute("#older-page", "disabled") is not None
    page.screenshot(path=artifact("badrows.png"), full_page=True)


def test_loads_view_lists_jobs_and_retries_a_failed_one(
    serve: Serve, page: Any, tmp_path: Path
) -> None:
    from headrace.loads.history import LoadHistory

    history = LoadHistory.in_data_dir(tmp_path / "data0")  # the data dir serve() will use
    done, _ = history.record(
        "crm", "members", "full", "https://exports.example/m.csv?sig=s3cret", 3600
    )
    history.finish([done.id], None, "loaded", rows={done.id: 1200})
    broken, _ = history.record(
        "crm", "signatures", "incremental", "https://exports.example/s.csv", 3600
    )
    history.finish(
        [broken.id], None, "failed", reason="not_found", error="HTTP 404 from the export"
    )
    history.close()
    server = serve()

    show(page, f"{server.url}/#/loads", "loads")
    assert page.inner_text(f"#loads tr[data-id='{done.id}'] td.num >> nth=0") == "1200"
    failed_row = f"#loads tr[data-id='{broken.id}']"
    assert "HTTP 404 from the export" in page.inner_text(failed_row)
    page.click(f"#loads tr[data-id='{done.id}']")
    assert "s3cret" not in page.inner_text("#load-json")  # the signed URL stays redacted
    page.click(f"{failed_row} button[data-action=retry]")
    page.wait_for_selector(f"{failed_row}.status-pending")
    page.screenshot(path=artifact("loads.png"), full_page=True)

    # the same operation submitted by another site (a browser would add saved credentials)
    forged = httpx.post(f"{server.url}/v1/loads/{broken.id}/cancel",
                        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert forged.status_code == 403 and forged.json()["error"] == "cross_site_request"
    assert httpx.post(f"{server.url}/v1/loads/{broken.id}/cancel").json()["status"] == "skipped"


def test_every_view_has_the_icon_and_no_console_error(serve: Serve, page: Any) -> None:
    server = serve()
    assert httpx.post(f"{server.url}/v1/streams/shop/events", json=[{"a": 1}]).status_code == 202
    wait_until(lambda: httpx.get(f"{server.url}/v1/streams/shop/events").status_code == 200)
    icon = httpx.get(f"{server.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    views = [("", "overview"), ("#/explore", "explore"), ("#/explore/shop", "explore"),
             ("#/explore/nothing", "explore"), ("#/pagehits", "pagehits"),
             ("#/deadletters", "deadletters"), ("#/badrows", "badrows"), ("#/loads", "loads")]  # fmt: skip
    for hash_, view in views:
        show(page, f"{server.url}/{hash_}", view)
        href = page.get_attribute("link[rel=icon]", "href")
        loaded = page.evaluate(
            "h => fetch(h).then(r => r.status + ' ' + r.headers.get('content-type'))", href
        )
        assert loaded == "200 image/svg+xml", hash_
    page.goto(f"{server.url}/demo?stream=demo&batch=50&interval=600000")
    assert page.get_attribute("link[rel=icon]", "href") == "/dashboard/static/favicon.svg"
