"""Dashboard endpoints over a 10M-event lake, each against the same DuckDB query run directly on
the files in the same run.

Method: a page-hits lake of ``--events`` hits over ``--days`` days is generated with DuckDB in
the lake sink's layout, as compaction leaves it (one zstd Parquet file per hour partition, listed
in the catalog; columns ``_id``, ``_received_at``, ``_time``, ``pagePath``, ``referrer``,
``userAgent``, ``timestamp``, ``_extra``). ``headrace serve`` (the page-hits recipe, one worker)
serves it; each endpoint is requested ``--reps`` times over HTTP after two warm-up requests, and
the equivalent hand-written SQL runs ``--reps`` times on ``read_parquet('<lake>/**/*.parquet')``
through one DuckDB connection kept open (the baseline pays no HTTP, no catalog, no
connection set-up). Figures: p50 and p95 in ms, and p50(endpoint) / p50(direct).

    .venv/bin/python bench/dashboard.py                   # 10,000,000 hits over 7 days
    .venv/bin/python bench/dashboard.py --events 1000000  # quicker
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx

from headrace.recipes import PAGE_HITS
from headrace.storage.lake_catalog import LAKE_SCHEMA
from headrace.storage.state import connect, init_schema

HOUR_US = 3_600_000_000
SINK, STREAM = "hits_lake", "analytics"


def generate(data_dir: Path, events: int, days: int) -> tuple[int, int]:
    """Write the lake and its catalog; returns the covered [start, end) in µs."""
    hours = days * 24
    end = int(time.time()) // 3600 * 3600 * 1_000_000
    start = end - hours * HOUR_US
    per_hour = -(-events // hours)
    root = data_dir / "lake"
    db = duckdb.connect()
    state = connect(data_dir / "state.db")
    init_schema(state, [LAKE_SCHEMA])
    now_us = time.time_ns() // 1000
    written = 0
    for hour in range(hours):
        rows = min(per_hour, events - written)
        if rows <= 0:
            break
        t0 = start + hour * HOUR_US
        moment = datetime.fromtimestamp(t0 / 1e6, tz=UTC)
        partition = f"dt={moment:%Y-%m-%d}/hour={moment:%H}"
        rel = f"{STREAM}/{partition}/bench-{hour:05d}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        # pages follow a skewed popularity (a few pages take most hits), as real sites do
        db.execute(
            f"""COPY (
              SELECT printf('%016x-%08x', {t0}, i) AS _id,
                     make_timestamp(t + 40000)::TIMESTAMPTZ AS _received_at,
                     make_timestamp(t)::TIMESTAMPTZ AS _time,
                     '/p/' || CAST(floor(pow(random(), 3) * 500) AS INTEGER) AS pagePath,
                     CASE WHEN i % 3 = 0 THEN NULL
                          ELSE 'https://ref' || (i % 40) || '.example/' END AS referrer,
                     'agent/' || (i % 7) AS userAgent,
                     strftime(make_timestamp(t), '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp,
                     CAST(NULL AS VARCHAR) AS _extra
              FROM (SELECT i, {t0} + (i * {HOUR_US // rows}) AS t FROM range({rows}) r(i))
              ORDER BY _time
            ) TO '{root / rel}' (FORMAT parquet, COMPRESSION zstd)"""
        )
        state.execute(
            "INSERT INTO lake_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (SINK, STREAM, partition, rel, rows, (root / rel).stat().st_size, t0,
             t0 + HOUR_US - 1, now_us),
        )  # fmt: skip
        written += rows
    names = ["pagePath", "referrer", "userAgent", "timestamp"]
    for position, (name, kind) in enumerate((n, "string") for n in names):
        state.execute(
            "INSERT INTO lake_columns VALUES (?, ?, ?, ?, ?)", (SINK, STREAM, name, kind, position)
        )
    state.close()
    db.close()
    return start, end


def timed(call: Callable[[], Any], reps: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="Generate into this directory and keep it.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="hr-bench-dash-"))
    data_dir = work / "data"
    try:
        began = time.perf_counter()
        start, end = generate(data_dir, args.events, args.days)
        size = sum(p.stat().st_size for p in (data_dir / "lake").rglob("*.parquet"))
        print(f"lake: {args.events:,} hits over {args.days} days, {size / 2**20:.0f} MiB, "
              f"generated in {time.perf_counter() - began:.1f}s")  # fmt: skip
        config = work / "pipeline.yaml"
        config.write_text(PAGE_HITS)
        url, server = start_server(data_dir, config, work / "serve.log")
        try:
            run(url, data_dir, start, end, args.reps)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(120)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def start_server(data_dir: Path, config: Path, log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """``headrace serve`` (one ingest worker) on a free port, once it is ready."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "headrace.cli", "serve", "--config", str(config), "--data-dir",
           str(data_dir), "--port", str(port), "--workers", "1"]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"headrace serve exited; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"headrace serve did not become ready; see {log}")


def run(url: str, data_dir: Path, start: int, end: int, reps: int) -> None:
    http = httpx.Client(base_url=url, timeout=120)
    db = duckdb.connect()
    files = str(data_dir / "lake" / STREAM / "**" / "*.parquet")
    src = f"read_parquet('{files}', union_by_name = true, hive_partitioning = false)"
    day = (iso(end - 24 * HOUR_US), iso(end))
    week = (iso(start), iso(end))
    hour_ago = time.time_ns() // 1000 - HOUR_US
    page = "/p/3"

    def get(path: str, **params: str) -> Callable[[], Any]:
        def call() -> Any:
            response = http.get(path, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        return call

    def sql(text: str, *params: Any) -> Callable[[], Any]:
        return lambda: db.execute(text, list(params)).fetchall()

    row = (
        "_id, epoch_us(_received_at), epoch_us(_time), pagePath, referrer, userAgent, "
        "timestamp, _extra"
    )
    in_range = "_time >= ?::TIMESTAMPTZ AND _time < ?::TIMESTAMPTZ"
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("overview (catalog + arrivals/min, last hour)", get("/api/dashboard/overview"),
         sql(f"SELECT epoch_us(_received_at) // 60000000 AS m, count(*) FROM {src} "
             "WHERE epoch_us(_received_at) >= ? GROUP BY m", hour_ago)),
        ("counts, 24 h, 15-min buckets",
         get(f"/api/dashboard/streams/{STREAM}/counts", since=day[0], until=day[1]),
         sql(f"SELECT epoch_us(_time) // 900000000 AS b, count(*) FROM {src} WHERE {in_range} "
             "GROUP BY b", *day)),
        ("counts, 7 d, 6-h buckets, by pagePath",
         get(f"/api/dashboard/streams/{STREAM}/counts", since=week[0], until=week[1],
             group_by="pagePath"),
         sql(f"SELECT epoch_us(_time) // 21600000000 AS b, pagePath, count(*) FROM {src} "
             f"WHERE {in_range} GROUP BY ALL", *week)),
        ("top pages, 7 d",
         get(f"/api/dashboard/streams/{STREAM}/top", since=week[0], until=week[1],
             field="pagePath"),
         sql(f"SELECT pagePath, count(*) AS n FROM {src} WHERE {in_range} GROUP BY pagePath "
             "ORDER BY n DESC LIMIT 10", *week)),
        ("page hits view, 7 d (series + top pages + top referrers)",
         get("/api/dashboard/pagehits", since=week[0], until=week[1]),
         lambda: [sql(f"SELECT epoch_us(_time) // 21600000000 AS b, count(*) FROM {src} "
                      f"WHERE {in_range} GROUP BY b", *week)(),
                  sql(f"SELECT pagePath, count(*) AS n FROM {src} WHERE {in_range} "
                      "GROUP BY 1 ORDER BY n DESC LIMIT 10", *week)(),
                  sql(f"SELECT referrer, count(*) AS n FROM {src} WHERE {in_range} "
                      "GROUP BY 1 ORDER BY n DESC LIMIT 10", *week)()]),
        ("events page, 24 h, pagePath filter (explore)",
         get(f"/api/dashboard/streams/{STREAM}/events", since=day[0], until=day[1],
             pagePath=page, limit="100"),
         sql(f"SELECT {row} FROM {src} WHERE {in_range} AND pagePath = ? "
             "ORDER BY _time DESC, _id DESC LIMIT 101", *day, page)),
        ("GET /analytics?pagePath= (read API, default 24 h)",
         get("/analytics", pagePath=page, limit="100"),
         sql(f"SELECT {row} FROM {src} WHERE {in_range} AND pagePath = ? "
             "ORDER BY _time DESC, _id DESC LIMIT 101", *day, page)),
    ]  # fmt: skip
    print(
        f"{'endpoint':<58} {'p50 ms':>8} {'p95 ms':>8} {'direct p50':>11} {'p95':>8} {'ratio':>6}"
    )
    for name, endpoint, direct in cases:
        ours = timed(endpoint, reps)
        base = timed(direct, reps)
        p50, p95 = statistics.median(ours), statistics.quantiles(ours, n=20)[18]
        b50, b95 = statistics.median(base), statistics.quantiles(base, n=20)[18]
        print(f"{name:<58} {p50:>8.1f} {p95:>8.1f} {b50:>11.1f} {b95:>8.1f} {p50 / b50:>5.1f}x")
    total = get(f"/api/dashboard/streams/{STREAM}/counts", since=week[0], until=week[1])()
    print(f"check: the 7-day count says {total['total']:,} hits")
    db.close()
    http.close()


if __name__ == "__main__":
    main()
