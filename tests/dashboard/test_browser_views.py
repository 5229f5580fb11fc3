"""The dashboard's views in headless Chromium (Debian's package, driven by Playwright): what a
person sees, checked on the page itself. Every test fails on any console error (the ``page``
fixture). Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from dashboard.conftest import (
    artifact,
    canvas_ink,
    chart_facts,
    drawn,
    legend,
    show,
    wait_until,
    write_lake,
)
from support.serverproc import ServerProcess

Serve = Callable[..., ServerProcess]
MIN = 60_000_000


OVERLAPS = """() => HR.charts.map(u => {
  const ax = u.axes[0], ctx = document.createElement("canvas").getContext("2d");
  ctx.font = u.axes[0].font[0];
  const xs = ax._splits.map(s => u.valToPos(s, "x"));
  const ws = ax._values.map(t => t == null ? 0
    : Math.max(...String(t).split("\\n").map(line => ctx.measureText(line).width)));
  let overlaps = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] - xs[i - 1] < (ws[i] + ws[i - 1]) / 2 + 12) overlaps++;  // a readable gap
  return {labels: ax._values.filter(v => v != null).length, overlaps: overlaps, width: u.width};
})"""


def iso(us: int) -> str:
    """µs since the epoch as ISO 8601 UTC, for a route's since/until."""
    return datetime.fromtimestamp(us / 1e6, ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")


def orders(now: int) -> list[tuple[int, dict[str, Any]]]:
    """Six hours of orders, one a minute: by volume ok, then retry, then failed."""
    events = []
    for i in range(360):
        status = "failed" if i % 10 == 0 else "retry" if i % 10 < 3 else "ok"
        events.append((now - (i + 1) * MIN, {
            "status": status, "id": f"ord-{i:05d}", "amount": i * 1.5, "paid": i % 2 == 0,
            "note": "same", "created_at": (now - i * MIN) // 1000,
        }))  # fmt: skip
    return events


def test_dashboard_shows_the_numbers(serve: Serve, page: Any) -> None:
    server = serve()
    shop = [{"action": ["view", "click", "buy"][i % 3], "n": i} for i in range(30)]
    assert httpx.post(f"{server.url}/v1/streams/shop/events", json=shop).status_code == 202
    hits = [{"pagePath": p, "referrer": "https://news.example/"} for p in ["/", "/", "/pricing"]]
    assert httpx.post(f"{server.url}/v1/streams/analytics/events", json=hits).status_code == 202
    for _ in range(2):
        httpx.post(f"{server.url}/v1/streams/shop/events", content=b"[1, 2")
    wait_until(
        lambda: (
            httpx.get(f"{server.url}/api/dashboard/overview").json()["sinks"][0]["delivered_events"]
            == 33
        ),
        what="delivery",
    )

    show(page, f"{server.url}/", "overview")
    card = "#stream-shop"
    assert page.inner_text(f"{card} [data-stat=stored] b") == "30"
    assert page.inner_text(f"{card} [data-stat=received] b") == "30"
    assert page.get_attribute(f"{card} .arrivals", "data-total") == "30"
    assert canvas_ink(page, f"{card} .arrivals") > 100
    assert page.inner_text("#source-events [data-stat=accepted] b") == "33"
    assert page.inner_text("#source-events [data-stat=rejected] b") == "2"
    assert "invalid_json" in page.inner_text("#source-events .rejections")
    assert page.inner_text("#sink-lake [data-stat=delivered] b") == "33"
    assert page.inner_text("#sink-lake [data-stat=backlog] b") == "0 B"
    assert "decode_error" in page.inner_text("#badrow-counts")
    page.screenshot(path=artifact("overview.png"), full_page=True)

    page.click(f"{card} h3 a")
    drawn(page, "explore")
    assert page.inner_text("#count-total").startswith("30 events")
    assert page.get_attribute("#count-chart div[data-total]", "data-total") == "30"
    assert len(page.query_selector_all("#events tr.clickable")) == 25
    page.click("#events tr.clickable >> nth=0")
    assert '"n": 29' in page.inner_text("#event-json")
    page.click("#next-page")
    page.wait_for_selector("#page-number:has-text('page 2')")
    assert len(page.query_selector_all("#events tr.clickable")) == 5

    page.select_option("#group-by", "action")
    drawn(page, "explore")
    assert sorted(legend(page, "#count-chart")) == [("buy", "10"), ("click", "10"), ("view", "10")]
    page.select_option("#filter-field", "action")
    page.fill("#filter-value", "buy")
    page.click("#add-filter")
    drawn(page, "explore")
    assert page.inner_text("#count-total").startswith("10 events")
    assert "action = buy" in page.inner_text("#filters")
    with page.expect_download() as download:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sorted(int(r["n"]) for r in rows) == list(range(2, 30, 3))
    page.screenshot(path=artifact("explore.png"), full_page=True)

    show(page, f"{server.url}/#/pagehits?stream=analytics&range=1h", "pagehits")
    assert page.inner_text("#hits-total").startswith("3 hits")
    assert canvas_ink(page, "#hits-chart") > 100
    top = [r.inner_text().split("\t")[:2] for r in page.query_selector_all("#top-pages tr")[1:]]
    assert top == [["/", "2"], ["/pricing", "1"]]
    assert "news.example" in page.inner_text("#top-referrers")

    # a custom range (in the page's time zone) that misses the hits, then one that holds them
    page.select_option("#range", "custom")
    page.fill("#since", "2020-01-01T00:00")
    page.fill("#until", "2020-01-02T00:00")
    page.click("#apply-range")
    page.wait_for_selector("#hits-total:has-text('0 hits')")
    page.fill("#since", "2020-01-01T00:00")
    page.fill("#until", "2099-01-01T00:00")
    page.click("#apply-range")
    page.wait_for_selector("#hits-total:has-text('3 hits')")


def test_an_unknown_stream_is_a_404_page_not_zero_events(serve: Serve, page: Any) -> None:
    server = serve()
    assert httpx.post(f"{server.url}/v1/streams/shop/events", json=[{"a": 1}]).status_code == 202
    wait_until(lambda: httpx.get(f"{server.url}/v1/streams/shop/events").status_code == 200)
    show(page, f"{server.url}/#/explore/shpo", "explore")
    notice = page.inner_text("#unknown-stream")
    assert "404" in notice and "shpo" in notice and "Nothing has been stored" in notice
    assert page.query_selector("#count-total") is None  # no "0 events"
    page.click("#unknown-stream a:has-text('shop')")
    drawn(page, "explore")
    assert page.inner_text("#count-total").startswith("1 event,")
    page.screenshot(path=artifact("explore-404.png"), full_page=True)


def test_charts_count_from_zero_in_volume_order_with_totals(
    serve: Serve, page: Any, tmp_path: Path
) -> None:
    now = time.time_ns() // 1000
    write_lake(tmp_path / "data0", "orders", orders(now))  # the data dir serve() will use
    server = serve()
    show(page, f"{server.url}/#/explore/orders?range=24h&group_by=status", "explore")
    # offered: text with a few values and booleans; not ids, numbers, times or a constant
    offered = [o.get_attribute("value") for o in page.query_selector_all("#group-by option")]
    assert offered == ["", "status", "paid"]
    facts = chart_facts(page, "#count-chart")
    assert facts["labels"] == ["ok", "retry", "failed"]  # by volume, not by name
    assert legend(page, "#count-chart") == [("ok", "252"), ("retry", "72"), ("failed", "36")]
    # another range (same volumes): the same order, the same colours
    page.select_option("#range", "7d")
    drawn(page, "explore")
    again = chart_facts(page, "#count-chart")
    assert again["labels"] == facts["labels"] and again["colors"] == facts["colors"]
    assert len(set(facts["colors"])) == 3
    page.screenshot(path=artifact("explore-grouped.png"), full_page=True)

    # every 15 minutes of these six hours hold 14 or 15 orders: zero is still the bottom
    busy = f"since={iso(now - 359 * MIN - MIN // 2)}&until={iso(now)}"
    show(page, f"{server.url}/#/explore/orders?{busy}", "explore")
    assert int(page.get_attribute("#count-chart div[data-total]", "data-total")) == 359
    assert chart_facts(page, "#count-chart")["ymin"] == 0
    show(page, f"{server.url}/#/?{busy}", "overview")
    assert chart_facts(page, "#stream-orders .arrivals")["ymin"] == 0


def test_the_overview_has_a_range_control_and_readable_time_axes(
    serve: Serve, page: Any, tmp_path: Path
) -> None:
    now = time.time_ns() // 1000
    write_lake(tmp_path / "data0", "orders", orders(now))
    server = serve()
    # a fixed hour holding 60 of the orders (one a minute)
    hour = f"since={iso(now - 60 * MIN - MIN // 2)}&until={iso(now)}"
    show(page, f"{server.url}/#/?{hour}", "overview")
    card = "#stream-orders"
    assert page.inner_text(f"{card} [data-stat=received] b") == "60"
    assert "per minute" in page.inner_text(card)
    for range_ in ("6h", "24h", "7d", "1h"):
        page.select_option("#range", range_)
        drawn(page, "overview")
        charts = page.evaluate(OVERLAPS)
        assert charts and all(c["labels"] >= 3 and c["overlaps"] == 0 for c in charts), (
            range_,
            charts,
        )
        if range_ == "6h":
            assert "per 15 min" in page.inner_text(card)
            page.screenshot(path=artifact("overview-6h.png"), full_page=True)
    assert "range=1h" in page.url  # the range is in the address, for a reload or a link


@pytest.mark.parametrize("browser_context", [{"timezone_id": "America/New_York"}], indirect=True)
def test_one_time_zone_for_tables_and_charts(serve: Serve, page: Any, tmp_path: Path) -> None:
    now = time.time_ns() // 1000
    events = orders(now)[:3]
    write_lake(tmp_path / "data0", "orders", events)
    server = serve()
    show(page, f"{server.url}/#/explore/orders?range=6h", "explore")
    york = ZoneInfo("America/New_York")

    def local(us: int, zone: Any) -> str:
        return datetime.fromtimestamp(us / 1e6, zone).strftime("%Y-%m-%d %H:%M:%S")

    first_time, first_data = events[0]
    assert page.inner_text("#events th >> nth=0") == "time (America/New_York)"
    cell = page.query_selector("#events tr.clickable >> nth=0").query_selector("td")
    assert cell.inner_text() == local(first_time, york)
    assert cell.get_attribute("title").startswith(
        datetime.fromtimestamp(first_time // 1_000_000, ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M")
    )
    # epoch ms in a field named like a time reads as a time; other numbers stay numbers
    created = page.query_selector("#events tr.clickable >> nth=0").query_selector(
        "td.time >> nth=1"
    )
    assert created.inner_text() == local(first_data["created_at"] * 1000, york)
    assert str(first_data["created_at"]) in created.get_attribute("title")

    def axis_matches_tables() -> bool:
        return bool(
            page.evaluate("""() => { const u = HR.charts[0], ax = u.axes[0];
            return ax._splits.every((s, i) => ax._values[i] == null || ax._values[i]
              .startsWith(HR.time(s * 1000).slice(11, 16))); }""")
        )

    assert axis_matches_tables()
    page.select_option("#tz", "utc")
    drawn(page, "explore")
    assert page.inner_text("#events th >> nth=0") == "time (UTC)"
    utc_cell = page.query_selector("#events tr.clickable >> nth=0").query_selector("td")
    assert utc_cell.inner_text() == local(first_time, ZoneInfo("UTC"))
    assert "America/New_York" in utc_cell.get_attribute("title")
    assert axis_matches_tables()
    show(page, f"{server.url}/#/explore/orders?range=6h", "explore")  # the choice is kept
    assert page.inner_text("#events th >> nth=0") == "time (UTC)"
