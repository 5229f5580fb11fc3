"""PostgreSQL delivery and export, each against a baseline measured in the same run.

Method, on the PostgreSQL at ``--dsn`` (default 127.0.0.1:5432, user postgres), in a throwaway
schema, ``--rounds`` times with the two sides of each comparison alternating (the machine is
noisy, so the ratio of each round is computed and the median is reported):

* **sink**: ``PostgresSink.write`` in batches of ``--batch`` impressions into a fresh table, merge
  on the impression dedupe key (binary COPY straight into the table; a unique violation would
  take the staged ``ON CONFLICT DO NOTHING`` path);
* **(a') the same shape by hand**: what the sink stores, written by a hand-made binary COPY
  with the sink's extra columns (event id, receive time, created-at) and one transaction per
  batch, which at-least-once delivery needs: it tells the sink's own cost from the cost of
  what it must store;
* **redelivery**: the same events written again by the same sink: every batch meets stored
  keys, so it takes the staged path and adds nothing (no baseline: the figure is for scale);
* **(a) plain COPY**: the same rows with psycopg's ``write_row`` into a fresh table with the same
  unique index, one COPY for all of them: what a hand-written loader would do;
* **(b) row by row**: the tutorial's loop, a SELECT for the key then an INSERT per row, on
  ``--slow-rows`` rows (once: it is slow);
* **export**: ``headrace``'s CSV export of a filtered selection vs a raw
  ``COPY (SELECT … WHERE … ORDER BY …) TO STDOUT`` of the same selection, both into a byte sink;
* **end to end** (``--e2e-events``, 0 to skip): ``headrace serve`` with a postgres sink, clients
  POST gzip-compressed JSON arrays of 100 impressions; the clock runs from the first POST until
  every row is committed (polled with ``count(*)``). Its baseline is the sink's own rate above.

Figures are rows per second of wall time. Targets: sink >= 0.8x (a), >= 30x (b); export >=
0.9x raw.

    .venv/bin/python bench/postgres.py          # 200,000 rows in batches of 10,000, 3 rounds
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from headrace.query.postgres import PostgresExport
from headrace.sinks.postgres.config import PostgresConfig
from headrace.sinks.postgres.sink import PostgresSink
from headrace.storage.state import Checkpoint
from headrace.types import Event

COLUMNS = {"key": "text", "split": "text", "environmentName": "text", "treatment": "text",
           "label": "text", "time": "bigint", "splitVersionNumber": "bigint"}  # fmt: skip
KEY = list(COLUMNS)


def impression(i: int) -> dict[str, Any]:
    return {"key": f"user-{i}", "split": "checkout", "environmentName": "production",
            "treatment": "on" if i % 2 else "off", "label": "default rule",
            "time": 1_763_800_000_000 + i, "splitVersionNumber": 7}  # fmt: skip


def backend_cpu(conn: psycopg.Connection[Any], application: str) -> float:
    """CPU seconds used so far by the server process of the session named ``application``."""
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,)
    ).fetchone()
    assert row is not None, application
    fields = Path(f"/proc/{row[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Discard:
    """A byte sink that keeps nothing (both export sides write into one)."""

    def write(self, data: Any) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def sink_round(
    admin: psycopg.Connection[Any],
    dsn: str,
    schema: str,
    table: str,
    data: list[dict[str, Any]],
    batch: int,
) -> tuple[float, float, float]:
    """Rows/s of wall time, CPU seconds (client + server) per 100k rows, and rows/s of the
    same events delivered again (every batch meets stored keys: the staged path)."""
    config = PostgresConfig.model_validate({
        "type": "postgres", "inputs": ["s"], "dsn": f"{dsn} application_name=hr_bench_sink",
        "schema": schema, "table": table, "columns": COLUMNS, "write_mode": "merge",
        "dedupe_key": KEY, "pool_size": 1})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        sink = PostgresSink("pg", config, Path(tmp))
        sink.open()
        events = [
            Event(str(uuid.uuid4()), "s", "s", 1_763_800_000_000_000 + i // 100, d)
            for i, d in enumerate(data)
        ]
        server = backend_cpu(admin, "hr_bench_sink")
        client = time.process_time()
        start = time.perf_counter()
        for n in range(0, len(events), batch):
            assert not sink.write(events[n : n + batch], Checkpoint("pg")).failed
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - client + backend_cpu(admin, "hr_bench_sink") - server
        start = time.perf_counter()
        for n in range(0, len(events), batch):
            assert not sink.write(events[n : n + batch], Checkpoint("pg")).failed
        again = time.perf_counter() - start
        sink.close()
    return len(data) / elapsed, cpu * 100_000 / len(data), len(data) / again


def plain_round(
    admin: psycopg.Connection[Any], schema: str, table: str, data: list[dict[str, Any]]
) -> tuple[float, float]:
    plain = sql.Identifier(schema, table)
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in COLUMNS.items()
    )
    admin.execute(sql.SQL("CREATE TABLE {} ({})").format(plain, cols))
    admin.execute(sql.SQL("CREATE UNIQUE INDEX ON {} ({})").format(
        plain, sql.SQL(", ").join(map(sql.Identifier, KEY))))  # fmt: skip
    server = backend_cpu(admin, "hr_bench_admin")
    client = time.process_time()
    start = time.perf_counter()
    with (
        admin.transaction(),
        admin.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(plain)) as copy,
    ):
        for row in data:
            copy.write_row([row[c] for c in COLUMNS])
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - client + backend_cpu(admin, "hr_bench_admin") - server
    return len(data) / elapsed, cpu * 100_000 / len(data)


def same_shape_round(
    admin: psycopg.Connection[Any], schema: str, table: str, data: list[dict[str, Any]], batch: int
) -> float:
    """(a') What the sink stores, by hand: binary COPY with the sink's extra columns (event id,
    receive time, created-at default) and one transaction a batch, as at-least-once delivery
    needs (a batch commits before its buffer position is saved)."""
    plain = sql.Identifier(schema, table)
    shape = {**COLUMNS, "_event_id": "text", "_received_at": "timestamptz",
             "_created_at": "timestamptz NOT NULL DEFAULT now()"}  # fmt: skip
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in shape.items()
    )
    admin.execute(sql.SQL("CREATE TABLE {} ({})").format(plain, cols))
    admin.execute(sql.SQL("CREATE UNIQUE INDEX ON {} ({}) NULLS NOT DISTINCT").format(
        plain, sql.SQL(", ").join(map(sql.Identifier, KEY))))  # fmt: skip
    names = [*COLUMNS, "_event_id", "_received_at"]
    types = ["int8" if t == "bigint" else t for t in COLUMNS.values()] + ["text", "timestamptz"]
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        plain, sql.SQL(", ").join(map(sql.Identifier, names))
    )
    received = datetime.datetime(2025, 11, 22, tzinfo=datetime.UTC)
    rows = [(*(row[c] for c in COLUMNS), str(uuid.uuid4()), received) for row in data]
    start = time.perf_counter()
    for n in range(0, len(rows), batch):
        with admin.transaction(), admin.cursor().copy(query) as copy:
            copy.set_types(types)
            for row in rows[n : n + batch]:
                copy.write_row(row)
    return len(data) / (time.perf_counter() - start)


def row_by_row(admin: psycopg.Connection[Any], schema: str, data: list[dict[str, Any]]) -> float:
    slow = sql.Identifier(schema, "slow")
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in COLUMNS.items()
    )
    admin.execute(sql.SQL("CREATE TABLE {} ({})").format(slow, cols))
    names = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    marks = sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS))
    match = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in KEY)
    start = time.perf_counter()
    for row in data:
        values = [row[c] for c in COLUMNS]
        if (
            admin.execute(
                sql.SQL("SELECT 1 FROM {} WHERE {}").format(slow, match), values
            ).fetchone()
            is None
        ):
            admin.execute(
                sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(slow, names, marks), values
            )
    return len(data) / (time.perf_counter() - start)


def export_round(dsn: str, schema: str, table: str, ours_first: bool) -> tuple[float, float]:
    """Both sides connect afresh and write into a byte sink; which goes first alternates."""
    config = PostgresConfig.model_validate({
        "type": "postgres", "inputs": ["s"], "dsn": dsn, "schema": schema, "table": table,
        "columns": COLUMNS, "write_mode": "merge", "dedupe_key": KEY})  # fmt: skip

    def ours() -> tuple[int, float]:
        start = time.perf_counter()
        with PostgresExport(config, where=[("treatment", "on")]) as export:
            rows = export.write_csv(Discard())  # type: ignore[arg-type]
        return rows, time.perf_counter() - start

    def raw() -> tuple[int, float]:
        names = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        query = sql.SQL("COPY (SELECT {} FROM {} WHERE treatment = 'on' ORDER BY _received_at) TO STDOUT (FORMAT csv)").format(
            names, sql.Identifier(schema, table))  # fmt: skip
        start = time.perf_counter()
        out = Discard()
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.cursor()
            with cursor.copy(query) as copy:
                for chunk in copy:
                    out.write(chunk)
        return cursor.rowcount, time.perf_counter() - start

    if ours_first:
        (ours_rows, ours_time), (raw_rows, raw_time) = ours(), raw()
    else:
        (raw_rows, raw_time), (ours_rows, ours_time) = raw(), ours()
    assert ours_rows == raw_rows, (ours_rows, raw_rows)
    return ours_rows / ours_time, raw_rows / raw_time


def end_to_end(dsn: str, schema: str, events: int, clients: int) -> float:
    """Events/s from the first POST until every row is committed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support.serverproc import ServerProcess

    pipeline = {
        "sources": {"impressions": {"type": "http", "path": "/webhooks/split/impressions", "success_status": 200}},
        "sinks": {"db": {"type": "postgres", "inputs": ["impressions"], "dsn": dsn, "schema": schema,
                         "table": "e2e", "columns": COLUMNS, "write_mode": "merge", "dedupe_key": KEY}},
    }  # fmt: skip
    bodies = [
        gzip.compress(json.dumps([impression(n + i) for i in range(100)]).encode())
        for n in range(0, events, 100)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "pipeline.json"
        config.write_text(json.dumps(pipeline))
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        server = ServerProcess(data_dir, config=config, workers=1)
        server.start()
        try:
            url = f"{server.url}/webhooks/split/impressions"
            errors: list[str] = []

            def post(mine: list[bytes]) -> None:
                with httpx.Client(timeout=30) as client:  # one kept-alive connection each
                    for body in mine:
                        answer = client.post(url, content=body)
                        if answer.status_code != 200:
                            errors.append(f"{answer.status_code} {answer.text}")

            threads = [
                threading.Thread(target=post, args=(bodies[i::clients],)) for i in range(clients)
            ]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            posted = time.perf_counter() - start
            table = sql.Identifier(schema, "e2e")
            with psycopg.connect(dsn, autocommit=True) as conn:
                while True:
                    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
                    if row and row[0] >= events:
                        break
                    if time.perf_counter() - start > 600:
                        raise RuntimeError(f"only {row} rows after 600 s")
                    time.sleep(0.02)
            elapsed = time.perf_counter() - start
            assert not errors, errors[:5]
            print(
                f"  end to end: {events:,} events POSTed in {posted:.2f}s, all committed after {elapsed:.2f}s"
            )
            return events / elapsed
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow-rows", type=int, default=5_000)
    parser.add_argument("--e2e-events", type=int, default=200_000)
    parser.add_argument("--e2e-clients", type=int, default=8)
    args = parser.parse_args()
    schema = f"hr_bench_{uuid.uuid4().hex[:8]}"
    data = [impression(i) for i in range(args.rows)]
    sink_rates, plain_rates, ratios, cpu_ratios, export_ratios = [], [], [], [], []
    again_rates: list[float] = []
    shape_ratios: list[float] = []
    with psycopg.connect(f"{args.dsn} application_name=hr_bench_admin", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            for r in range(args.rounds):
                sink_rate, sink_cpu, again_rate = sink_round(
                    admin, args.dsn, schema, f"sink_{r}", data, args.batch
                )
                again_rates.append(again_rate)
                plain_rate, plain_cpu = plain_round(admin, schema, f"plain_{r}", data)
                shape_ratios.append(
                    sink_rate / same_shape_round(admin, schema, f"shape_{r}", data, args.batch)
                )
                ours, raw = export_round(args.dsn, schema, f"sink_{r}", r % 2 == 0)
                sink_rates.append(sink_rate)
                plain_rates.append(plain_rate)
                ratios.append(sink_rate / plain_rate)
                cpu_ratios.append(plain_cpu / sink_cpu)
                export_ratios.append(ours / raw)
                print(f"round {r + 1}: sink {sink_rate:,.0f} rows/s ({sink_cpu:.2f} CPU s/100k rows), plain COPY "
                      f"{plain_rate:,.0f} rows/s ({plain_cpu:.2f}) = {sink_rate / plain_rate:.2f}x wall, {plain_cpu / sink_cpu:.2f}x CPU; export {ours:,.0f} vs raw {raw:,.0f} rows/s ({ours / raw:.2f}x)")  # fmt: skip
            slow = row_by_row(admin, schema, data[: args.slow_rows])
            e2e = (
                end_to_end(args.dsn, schema, args.e2e_events, args.e2e_clients)
                if args.e2e_events
                else None
            )
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    sink = statistics.median(sink_rates)
    print(f"\nrows {args.rows:,} in batches of {args.batch:,}, {args.rounds} rounds (medians); "
          f"row-by-row on {args.slow_rows:,}")  # fmt: skip
    print(f"sink (merge, dedupe on)    {sink:>12,.0f} rows/s")
    print(
        f"(a) plain COPY + index     {statistics.median(plain_rates):>12,.0f} rows/s   sink/(a) = {statistics.median(ratios):.2f}x (target >= 0.8)"
    )
    print(
        f"(a') the sink's columns and batches by hand    sink/(a') = {statistics.median(shape_ratios):.2f}x (binary COPY, ids, one commit a batch)"
    )
    print(
        f"sink, all redelivered      {statistics.median(again_rates):>12,.0f} rows/s   (staged ON CONFLICT DO NOTHING: nothing added)"
    )
    print(
        f"(b) SELECT-then-INSERT     {slow:>12,.0f} rows/s   sink/(b) = {sink / slow:.0f}x (target >= 30)"
    )
    print(
        f"export / raw COPY TO STDOUT                     = {statistics.median(export_ratios):.2f}x (target >= 0.9)"
    )
    if e2e is not None:
        print(f"end to end, HTTP to rows   {e2e:>12,.0f} events/s  = {e2e / sink:.2f}x of the sink alone "
              f"({args.e2e_clients} clients, 100-event gzip batches)")  # fmt: skip


if __name__ == "__main__":
    main()
