"""The dashboard's JSON endpoints against a running server: numbers a person would check."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import httpx

from dashboard.conftest import wait_until
from support.serverproc import ServerProcess

Serve = Callable[..., ServerProcess]


def post(server: ServerProcess, stream: str, events: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{server.url}/v1/streams/{stream}/events", json=events, timeout=10)
    assert response.status_code == 202, response.text


def get(server: ServerProcess, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def stored(server: ServerProcess, stream: str) -> int:
    for panel in get(server, "/api/dashboard/overview")["streams"]:
        if panel["stream"] == stream:
            return int(panel["events"])
    return 0


def test_overview_explore_counts_top_and_export(serve: Serve) -> None:
    server = serve()
    events = [{"action": ["view", "click", "buy"][i % 3], "n": i} for i in range(30)]
    post(server, "shop", events)
    post(server, "other", [{"x": 1}])
    httpx.post(f"{server.url}/v1/streams/shop/events", content=b"{not json", timeout=10)
    wait_until(lambda: stored(server, "shop") == 30 and stored(server, "other") == 1)
    # the delivery process publishes its counters about once a second
    doc = wait_until(
        lambda: (
            (d := get(server, "/api/dashboard/overview"))["sinks"][0]["delivered_events"] == 31
            and d
        )
    )
    (source,) = doc["sources"]
    assert source["accepted_events"] == 31 and source["rejected"] == {"invalid_json": 1}
    (sink,) = doc["sinks"]
    assert sink["delivered_events"] == 31 and sink["dead_letters"] == {}
    assert sink["backlog_bytes"] == 0 and sink["oldest_undelivered_seconds"] == 0
    shop = next(s for s in doc["streams"] if s["stream"] == "shop")
    assert sum(shop["arrivals"]) == 30 and len(shop["arrivals"]) == 61  # the hour's minutes
    assert doc["bad_rows"] == [{"source": "events", "reason": "decode_error", "count": 1}]

    counts = get(server, "/api/dashboard/streams/shop/counts", group_by="action")
    assert counts["total"] == 30
    assert {k: sum(v) for k, v in counts["series"].items()} == {"view": 10, "click": 10, "buy": 10}
    filtered = get(server, "/api/dashboard/streams/shop/counts", action="buy")
    assert filtered["total"] == 10
    top = get(server, "/api/dashboard/streams/shop/top", field="action", top="2")
    assert [v["count"] for v in top["values"]] == [10, 10]
    assert get(server, "/api/dashboard/streams/shop/columns")["columns"] == {
        "action": "string",
        "n": "int64",
    }
    page = get(server, "/api/dashboard/streams/shop/events", limit="4", action="click")
    assert [e["data"]["n"] for e in page["events"]] == [28, 25, 22, 19]
    older = get(server, "/api/dashboard/streams/shop/events", limit="4", action="click",
                cursor=page["next_cursor"])  # fmt: skip
    assert [e["data"]["n"] for e in older["events"]] == [16, 13, 10, 7]

    export = httpx.get(f"{server.url}/api/dashboard/streams/shop/export.csv",
                       params={"action": "buy"}, timeout=30)  # fmt: skip
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [int(r["n"]) for r in rows] == list(range(2, 30, 3))


def test_bad_parameters_get_specific_errors(serve: Serve) -> None:
    server = serve()
    cases = [
        ("/api/dashboard/streams/shop/counts", {"since": "yesterday"}, 400, "invalid_time"),
        ("/api/dashboard/streams/shop/counts", {"since": "2030-01-01", "until": "2029-01-01"},
         400, "invalid_range"),
        ("/api/dashboard/streams/shop/top", {}, 400, "missing_field"),
        ("/api/dashboard/streams/shop/top", {"field": "a", "top": "1000"}, 400, "invalid_parameter"),
        ("/api/dashboard/streams/bad%20name/counts", {}, 400, "invalid_stream"),
        ("/api/dashboard/streams/shop/counts", {"sink": "nope"}, 404, "unknown_sink"),
        ("/api/dashboard/nothing", {}, 404, "not_found"),
        ("/v1/deadletters", {"limit": "0"}, 400, "invalid_parameter"),
    ]  # fmt: skip
    for path, params, status, reason in cases:
        response = httpx.get(f"{server.url}{path}", params=params, timeout=10)
        assert (response.status_code, response.json()["error"]) == (status, reason), path
    assert httpx.post(f"{server.url}/api/dashboard/overview", timeout=10).status_code == 405


def test_dead_letters_are_listed_with_their_reason(serve: Serve) -> None:
    server = serve(
        """
sources:
  orders: {type: http}
sinks:
  lake:
    type: lake
    inputs: [orders]
    streams: {orders: {fields: {total: float64}}}
"""
    )
    post(server, "orders", [{"total": 1.5}, {"total": "lots"}])
    doc = wait_until(
        lambda: (d := get(server, "/api/dashboard/overview"))["sinks"][0]["dead_letters"] and d
    )
    assert doc["sinks"][0]["dead_letters"] == {"type_mismatch": 1}
    listed = get(server, "/v1/deadletters", sink="lake")
    (dead,) = listed["dead_letters"]
    assert dead["reason"] == "type_mismatch" and dead["data"] == {"total": "lots"}
    assert get(server, "/v1/deadletters", reason="other")["dead_letters"] == []


def test_reads_need_credentials_when_configured(serve: Serve) -> None:
    server = serve(
        """
sources:
  events: {type: http, path: "/v1/streams/{stream}/events"}
sinks:
  lake: {type: lake, inputs: [events]}
api:
  read_tokens: ["s3cret"]
  users: {ada: "lovelace"}
"""
    )
    for path in ["/", "/demo", "/api/dashboard/overview", "/v1/deadletters",
                 "/dashboard/static/app.js", "/v1/streams/x/events", "/api/dashboard/streams",
                 "/api/dashboard/deadletters", "/api/dashboard/badrows/1",
                 "/api/dashboard/pagehits", "/api/dashboard/streams/x/fields"]:  # fmt: skip
        response = httpx.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 401, path
        if not path.startswith("/v1/streams"):
            assert response.headers["www-authenticate"].startswith("Basic")
    for auth in [{"Authorization": "Bearer s3cret"}]:
        assert httpx.get(f"{server.url}/", headers=auth, timeout=10).status_code == 200
    ok = httpx.get(f"{server.url}/api/dashboard/overview", auth=("ada", "lovelace"), timeout=10)
    assert ok.status_code == 200
    token_as_password = httpx.get(f"{server.url}/", auth=("x", "s3cret"), timeout=10)
    assert token_as_password.status_code == 200
    assert httpx.get(f"{server.url}/", auth=("ada", "nope"), timeout=10).status_code == 401
    icon = httpx.get(f"{server.url}/favicon.ico", timeout=10)  # public too: a browser asks
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    # the tracker is public: pages on any site load it
    sdk = httpx.get(f"{server.url}/sdk/headrace.js", timeout=10)
    assert sdk.status_code == 200 and "javascript" in sdk.headers["content-type"]
    assert len(sdk.content) < 5 * 1024
    # writes stay governed by the source, not by the read credentials
    assert httpx.post(f"{server.url}/v1/streams/x/events", json={"a": 1}).status_code == 202


def test_dashboard_answers_refuse_framing_and_sniffing(serve: Serve) -> None:
    server = serve()
    for path in ("/", "/demo", "/api/dashboard/overview", "/api/dashboard/nothing"):
        headers = httpx.get(f"{server.url}{path}").headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    tracker = httpx.get(f"{server.url}/sdk/headrace.js").headers
    assert tracker["x-content-type-options"] == "nosniff"
    assert "x-frame-options" not in tracker and "content-security-policy" not in tracker
    assert tracker["access-control-allow-origin"] == "*"


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "plain"]


def test_csv_export_defuses_spreadsheet_formulas(serve: Serve) -> None:
    server = serve()
    post(server, "hits", [{"pagePath": p, "n": -i} for i, p in enumerate(FORMULAS)])
    wait_until(lambda: stored(server, "hits") == len(FORMULAS), what="delivery")
    export = httpx.get(f"{server.url}/api/dashboard/streams/hits/export.csv", timeout=30)
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["pagePath"] for r in rows] == ["'" + p for p in FORMULAS[:-1]] + ["plain"]
    assert [r["n"] for r in rows] == ["0", "-1", "-2", "-3", "-4", "-5"]  # numbers stay numbers


def test_odd_time_parameters_are_400_and_huge_ranges_stay_small(serve: Serve) -> None:
    server = serve()
    post(server, "odd", [{"n": 1}])
    wait_until(lambda: stored(server, "odd") == 1, what="delivery")
    base = f"{server.url}/api/dashboard/streams/odd"
    for path, params in [
        ("/counts", {"until": "99999999999999999999"}),
        ("/counts", {"since": "-99999999999999999999"}),
        ("/events", {"since": "99999999999999999999"}),
        ("/top", {"field": "n", "until": "-99999999999999999999"}),
    ]:
        response = httpx.get(base + path, params=params, timeout=30)
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["error"] == "invalid_time"
    wide = get(server, "/api/dashboard/streams/odd/counts", since="0001-01-02T00:00:00Z",
               until="9999-12-30T00:00:00Z")  # fmt: skip
    assert len(wide["times"]) <= 121 and wide["total"] == 1


def test_a_field_named_with_order_by_can_be_counted_and_filtered(serve: Serve) -> None:
    server = serve()
    odd = "a ORDER BY b"
    post(server, "sql", [{odd: "x" if i % 2 else "y", "n": i} for i in range(6)])
    wait_until(lambda: stored(server, "sql") == 6, what="delivery")
    base = "/api/dashboard/streams/sql"
    grouped = get(server, f"{base}/counts", group_by=odd)
    assert grouped["total"] == 6 and sorted(grouped["series"]) == ["x", "y"]
    assert get(server, f"{base}/counts", **{odd: "x"})["total"] == 3
    assert [v["value"] for v in get(server, f"{base}/top", field=odd)["values"]] == ["x", "y"]
