"""PostgreSQL delivery and export, each against a baseline measured in the same run.

Method, on the PostgreSQL at ``--dsn`` (default 127.0.0.1:5432, user postgres), in a throwaway
schema:

* **sink**: ``PostgresSink.write`` in batches of ``--batch`` impressions, merge on the impression
  dedupe key (COPY into a staging table, skip stored ids, INSERT … ON CONFLICT DO NOTHING);
* **(a) plain COPY**: the same rows COPY'd straight into a fresh table with the same unique index;
* **(b) row by row**: the tutorial's loop, a SELECT for the key then an INSERT, per row, on
  ``--slow-rows`` rows;
* **export**: ``headrace``'s CSV export of the table vs a raw ``COPY (SELECT …) TO STDOUT``.

Figures are rows per second of wall time; targets: sink >= 0.8x (a), >= 30x (b); export >= 0.9x.

    .venv/bin/python bench/postgres.py          # 200,000 rows in batches of 10,000
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from headrace.config.models import PostgresSink as PostgresConfig
from headrace.runtime.state import Checkpoint
from headrace.sinks.postgres import PostgresSink
from headrace.types import Event

COLUMNS = {"key": "text", "split": "text", "environmentName": "text", "treatment": "text",
           "label": "text", "time": "bigint", "splitVersionNumber": "bigint"}  # fmt: skip
KEY = list(COLUMNS)


def impression(i: int) -> dict[str, Any]:
    return {"key": f"user-{i}", "split": "checkout", "environmentName": "production",
            "treatment": "on" if i % 2 else "off", "label": "default rule",
            "time": 1_763_800_000_000 + i, "splitVersionNumber": 7}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--slow-rows", type=int, default=5_000)
    args = parser.parse_args()
    schema = f"hr_bench_{uuid.uuid4().hex[:8]}"
    data = [impression(i) for i in range(args.rows)]
    results: dict[str, float] = {}
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            config = PostgresConfig.model_validate({
                "type": "postgres", "inputs": ["s"], "dsn": args.dsn, "schema": schema, "table": "sink",
                "columns": COLUMNS, "write_mode": "merge", "dedupe_key": KEY})  # fmt: skip
            with tempfile.TemporaryDirectory() as tmp:
                sink = PostgresSink("pg", config, Path(tmp))
                sink.open()
                events = [
                    Event(f"ev-{i}", "s", "s", 1_763_800_000_000_000 + i, d)
                    for i, d in enumerate(data)
                ]
                start = time.perf_counter()
                for n in range(0, len(events), args.batch):
                    sink.write(events[n : n + args.batch], Checkpoint("pg"))
                results["sink"] = args.rows / (time.perf_counter() - start)
                sink.close()
            plain = sql.Identifier(schema, "plain")
            cols = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in COLUMNS.items()
            )
            admin.execute(sql.SQL("CREATE TABLE {} ({})").format(plain, cols))
            admin.execute(
                sql.SQL("CREATE UNIQUE INDEX ON {} ({})").format(
                    plain, sql.SQL(", ").join(map(sql.Identifier, KEY))
                )
            )
            start = time.perf_counter()
            with (
                admin.transaction(),
                admin.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(plain)) as copy,
            ):
                for row in data:
                    copy.write_row([row[c] for c in COLUMNS])
            results["plain_copy"] = args.rows / (time.perf_counter() - start)
            slow = sql.Identifier(schema, "slow")
            admin.execute(sql.SQL("CREATE TABLE {} ({})").format(slow, cols))
            names = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
            marks = sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS))
            match = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in KEY)
            start = time.perf_counter()
            for row in data[: args.slow_rows]:
                values = [row[c] for c in COLUMNS]
                if (
                    admin.execute(
                        sql.SQL("SELECT 1 FROM {} WHERE {}").format(slow, match), values
                    ).fetchone()
                    is None
                ):
                    admin.execute(
                        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(slow, names, marks),
                        values,
                    )
            results["row_by_row"] = args.slow_rows / (time.perf_counter() - start)
            from headrace.query.postgres import export_postgres

            start = time.perf_counter()
            exported = export_postgres(
                config, since_us=None, until_us=None, where=[("treatment", "on")], out=io.StringIO()
            )
            results["export"] = exported / (time.perf_counter() - start)
            query = sql.SQL("COPY (SELECT {} FROM {} WHERE CAST(treatment AS text) = 'on' ORDER BY _received_at) TO STDOUT (FORMAT csv)").format(
                names, sql.Identifier(schema, "sink"))  # fmt: skip
            start = time.perf_counter()
            raw = 0
            with admin.cursor().copy(query) as copy:
                for chunk in copy:
                    raw += bytes(chunk).count(b"\n")
            results["raw_export"] = raw / (time.perf_counter() - start)
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    print(f"rows {args.rows:,} in batches of {args.batch:,}; row-by-row on {args.slow_rows:,}")
    print(f"sink (merge, dedupe on)    {results['sink']:>12,.0f} rows/s")
    print(
        f"(a) plain COPY + index     {results['plain_copy']:>12,.0f} rows/s   sink/(a) = {results['sink'] / results['plain_copy']:.2f}x (target >= 0.8)"
    )
    print(
        f"(b) SELECT-then-INSERT     {results['row_by_row']:>12,.0f} rows/s   sink/(b) = {results['sink'] / results['row_by_row']:.0f}x (target >= 30)"
    )
    print(f"export (headrace)          {results['export']:>12,.0f} rows/s")
    print(
        f"raw COPY TO STDOUT         {results['raw_export']:>12,.0f} rows/s   export/raw = {results['export'] / results['raw_export']:.2f}x (target >= 0.9)"
    )


if __name__ == "__main__":
    main()
