"""The dashboard over a PostgreSQL sink: the same views, answered with SQL on the table."""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from dashboard.conftest import wait_until
from support.serverproc import ServerProcess

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
T0 = 1_763_800_000_000  # epoch ms
Serve = Callable[..., ServerProcess]


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"hr_dash_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def get(server: ServerProcess, path: str, **params: str) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_explore_a_postgres_table(serve: Serve, schema: str) -> None:
    server = serve(
        f"""
sources:
  impressions: {{type: http}}
sinks:
  db:
    type: postgres
    inputs: [impressions]
    dsn: "{DSN}"
    schema: {schema}
    table: "imp'ressions"
    columns: {{key: text, treatment: text, time: bigint}}
    export: {{time_column: time, time_unit: epoch_ms}}
"""
    )
    sent = [{"key": f"u{i}", "treatment": "on" if i % 3 else "off", "time": T0 + i * 60_000,
             "extra": {"n": i}} for i in range(12)]  # fmt: skip
    response = httpx.post(f"{server.url}/v1/streams/impressions/events", json=sent, timeout=10)
    assert response.status_code == 202
    panel = wait_until(
        lambda: next(
            (p for p in get(server, "/api/dashboard/overview")["streams"] if p.get("events") == 12),
            None,
        ),
        what="12 rows in the table",
    )
    assert panel["sink"] == "db" and panel["table"] == f"{schema}.imp'ressions"
    assert sum(panel["arrivals"]) == 12 and panel["bytes"] > 0

    window = {"since": str(T0), "until": str(T0 + 3_600_000)}
    counts = get(server, "/api/dashboard/streams/impressions/counts", group_by="treatment",
                 **window)  # fmt: skip
    assert counts["sink"] == "db" and counts["total"] == 12 and counts["bucket_seconds"] == 60
    assert {k: sum(v) for k, v in counts["series"].items()} == {"on": 8, "off": 4}
    assert counts["series"]["off"][:4] == [1, 0, 0, 1]
    by_extra = get(server, "/api/dashboard/streams/impressions/counts", **window, key="u4")
    assert by_extra["total"] == 1
    top = get(server, "/api/dashboard/streams/impressions/top", field="treatment", **window)
    assert top["values"] == [{"value": "on", "count": 8}, {"value": "off", "count": 4}]
    assert get(server, "/api/dashboard/streams/impressions/columns")["columns"] == {
        "key": "text", "treatment": "text", "time": "bigint"
    }  # fmt: skip

    page = get(server, "/api/dashboard/streams/impressions/events", limit="5", treatment="on")
    assert [e["data"]["key"] for e in page["events"]] == ["u11", "u10", "u8", "u7", "u5"]
    assert page["events"][0]["data"]["extra"] == {"n": 11}
    assert page["events"][0]["time"] == "2025-11-22T08:37:40Z"  # T0 + 11 min
    rest = get(server, "/api/dashboard/streams/impressions/events", limit="5", treatment="on",
               cursor=page["next_cursor"])  # fmt: skip
    assert [e["data"]["key"] for e in rest["events"]] == ["u4", "u2", "u1"]
    assert rest["next_cursor"] is None

    export = httpx.get(f"{server.url}/api/dashboard/streams/impressions/export.csv",
                       params={**window, "treatment": "off"}, timeout=30)  # fmt: skip
    assert export.status_code == 200
    assert [r["key"] for r in csv.DictReader(io.StringIO(export.text))] == ["u0", "u3", "u6", "u9"]


def test_an_unreachable_database_answers_503(serve: Serve) -> None:
    server = serve(
        """
sources:
  impressions: {type: http}
sinks:
  db:
    type: postgres
    inputs: [impressions]
    dsn: "host=127.0.0.1 port=1 user=postgres connect_timeout=1"
    table: impressions
""",
        ready=False,  # the sink cannot open: the server runs, not ready
    )
    began = time.monotonic()
    response = httpx.get(f"{server.url}/api/dashboard/streams/impressions/counts", timeout=30)
    assert response.status_code == 503 and response.json()["error"] == "sink_unreachable"
    assert time.monotonic() - began < 20
    overview = get(server, "/api/dashboard/overview")
    assert "cannot connect to PostgreSQL" in overview["streams"][0]["error"]


def test_a_csv_export_does_not_stall_ingest_while_connecting(serve: Serve) -> None:
    # a database that completes the TCP handshake and then never answers: connecting to it
    # takes the whole connect_timeout
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        server = serve(
            f"""
sources:
  impressions: {{type: http}}
sinks:
  db:
    type: postgres
    inputs: [impressions]
    dsn: "host=127.0.0.1 port={port} user=postgres connect_timeout=4"
    table: impressions
""",
            ready=False,
        )
        exported: list[httpx.Response] = []
        export = threading.Thread(target=lambda: exported.append(httpx.get(
            f"{server.url}/api/dashboard/streams/impressions/export.csv", timeout=30)))  # fmt: skip
        export.start()
        time.sleep(0.5)  # the export is connecting now
        began = time.monotonic()
        posted = httpx.post(
            f"{server.url}/v1/streams/impressions/events", json=[{"n": 1}], timeout=30
        )
        took = time.monotonic() - began
        export.join(30)
        assert posted.status_code == 202
        assert took < 2, f"an ingest request waited {took:.1f} s behind the export"
        assert exported[0].status_code == 503
        assert exported[0].json()["error"] == "sink_unreachable"
    finally:
        silent.close()


def test_postgres_csv_export_defuses_spreadsheet_formulas(serve: Serve, schema: str) -> None:
    server = serve(
        f"""
sources:
  hits: {{type: http}}
sinks:
  db:
    type: postgres
    inputs: [hits]
    dsn: "{DSN}"
    schema: {schema}
    table: hits
    columns: {{path: text, n: bigint, time: bigint}}
    export: {{time_column: time, time_unit: epoch_ms}}
"""
    )
    paths = ["=cmd|' /C calc'!A0", "+1", "-1", "@x", "ok"]
    sent = [{"path": p, "n": -i, "time": T0 + i} for i, p in enumerate(paths)]
    assert httpx.post(f"{server.url}/v1/streams/hits/events", json=sent).status_code == 202
    window = {"since": str(T0 // 1000 - 60), "until": str(T0 // 1000 + 60)}

    def exported() -> list[dict[str, str]]:
        response = httpx.get(f"{server.url}/api/dashboard/streams/hits/export.csv",
                             params=window, timeout=30)  # fmt: skip
        return (
            list(csv.DictReader(io.StringIO(response.text))) if response.status_code == 200 else []
        )

    rows = wait_until(lambda: len(found := exported()) == 5 and found)
    assert [r["path"] for r in rows] == ["'=cmd|' /C calc'!A0", "'+1", "'-1", "'@x", "ok"]
    assert [r["n"] for r in rows] == ["0", "-1", "-2", "-3", "-4"]


def test_page_hits_and_groupable_fields_from_a_postgres_table(serve: Serve, schema: str) -> None:
    server = serve(
        f"""
sources:
  analytics:
    type: http
    map: {{copy: {{visitor: $visitor}}}}
sinks:
  db:
    type: postgres
    inputs: [analytics]
    dsn: "{DSN}"
    schema: {schema}
    table: hits
    columns: {{pagePath: text, referrer: text, userAgent: text, visitor: text, time: bigint,
               mobile: boolean, event: text}}
    export: {{time_column: time, time_unit: epoch_ms}}
"""
    )
    hits = [("/pricing", "https://www.News.example/a", "agent-a", False),
            ("/pricing", "https://news.example/b", "agent-b", False),
            ("/", None, "agent-a", True), ("/", "", "agent-c", True),
            ("/docs", "https://blog.example:8443/x", "agent-a", False)]  # fmt: skip
    for i, (path, referrer, agent, mobile) in enumerate(hits):
        body = {"pagePath": path, "referrer": referrer, "userAgent": agent, "mobile": mobile,
                "time": T0 + i * 60_000}  # fmt: skip
        sent = httpx.post(f"{server.url}/v1/streams/analytics/events", json=body,
                          headers={"User-Agent": agent}, timeout=10)  # fmt: skip
        assert sent.status_code == 202, sent.text
    click = {"pagePath": "/", "event": "add_to_cart", "time": T0 + 30_000}  # no page hit
    assert httpx.post(f"{server.url}/v1/streams/analytics/events", json=click).status_code == 202
    window = {"since": str(T0), "until": str(T0 + 3_600_000)}
    wait_until(
        lambda: get(server, "/api/dashboard/streams/analytics/counts", **window)["total"] == 6,
        what="6 rows in the table",
    )
    doc = get(server, "/api/dashboard/pagehits", stream="analytics", **window)
    assert doc["sink"] == "db" and doc["total"] == 5 and doc["visitors"] == 3
    assert sum(doc["series"]["visitors"]) == 5  # one a minute
    assert [(r["value"], r["count"], r["distinct"]) for r in doc["top_referrers"]] == [
        ("news.example", 2, 2),
        ("Direct / None", 2, 2),
        ("blog.example", 1, 1),
    ]  # fmt: skip  (a tie: no domain last)
    assert doc["top_pages"][1] == {"value": "/pricing", "count": 2, "distinct": 2}  # after "/"
    news = get(server, "/api/dashboard/pagehits", stream="analytics", referrer_domain="news.example",
               **window)  # fmt: skip
    assert news["total"] == 2 and news["previous"]["total"] == 0
    direct = get(server, "/api/dashboard/pagehits", stream="analytics",
                 referrer_domain="(direct)", pagePath="/", **window)  # fmt: skip
    assert direct["total"] == 2
    fields = get(server, "/api/dashboard/streams/analytics/fields", **window)["fields"]
    groupable = {f["name"] for f in fields if f["groupable"]}
    # 3 pages or agents in 6 events: at most half as many values as events; 4 visitors: no
    assert groupable == {"pagePath", "userAgent", "mobile"}
