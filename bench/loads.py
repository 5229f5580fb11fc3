"""Bulk table loads of a CSV export, each against the database's own loader in the same run.

Method: one ``--rows``-row CSV export (header row, quoted fields with commas and embedded
newlines, empty fields, timestamps, booleans) is written to a temp dir. Then, alternating, best
of ``--repeat`` runs each:

* **PostgreSQL, headrace**: ``PostgresLoader`` in ``append`` mode into an existing empty table
  (COPY … FROM STDIN with the header's column list and FORCE_NULL), and in ``replace`` mode (a
  full export: new staging table, COPY, swap in one transaction);
* **PostgreSQL, baseline**: ``psql -c "\\copy t FROM 'file' CSV HEADER"`` into an existing empty
  table of the same shape, and the same with headrace's ``FORCE_NULL`` of every column (so
  ``""`` loads as NULL too), which shows what that option costs by itself;
* **DuckDB, headrace**: ``DuckDBLoader`` in ``replace`` mode with the same DDL;
* **DuckDB, baseline**: ``CREATE TABLE t AS SELECT * FROM read_csv('file')`` (DuckDB's own
  reader with its sniffer), in the same process.

Figures are rows per second of wall time, and headrace's as a fraction of the baseline's
(target for PostgreSQL: >= 0.9x). The staging checksum and download are not part of the
figures (they are the same work whatever loads the file).

    .venv/bin/python bench/loads.py              # 1,000,000 rows
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from headrace.loads.csvfile import CsvFile
from headrace.loads.schema import parse_ddl
from headrace.loads.warehouses import LoadPlan
from headrace.loads.warehouses.duckdb import DuckDBLoader, DuckDBWarehouseConfig
from headrace.loads.warehouses.postgres import PostgresLoader, PostgresWarehouseConfig

DDL = """CREATE TABLE public.signatures (
    id bigint NOT NULL,
    email character varying(255),
    first_name character varying(100),
    note text,
    amount numeric(12,2),
    consent boolean,
    created_at timestamp without time zone
);"""


def write_export(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("id,email,first_name,note,amount,consent,created_at\n")
        for i in range(rows):
            note = (
                f'"said ""hi"", then\nleft {i}"' if i % 10 == 0 else ("" if i % 3 == 0 else f"n{i}")
            )
            out.write(
                f"{i},user{i}@example.org,Name {i % 977},{note},{i % 1000}.{i % 100:02d},"
                f"{'t' if i % 2 else 'f'},2024-{1 + i % 12:02d}-{1 + i % 28:02d} 12:{i % 60:02d}:00\n"
            )


def best(runs: int, step: Callable[[], None], before: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        before()
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    args = parser.parse_args()
    if shutil.which("psql") is None:
        raise SystemExit("psql is needed for the baseline (apt-get install postgresql-client)")
    work = Path(tempfile.mkdtemp(prefix="hr-bench-loads-"))
    schema_name = f"hr_bench_{uuid.uuid4().hex[:8]}"
    export = work / "signatures.csv"
    write_export(export, args.rows)
    size = export.stat().st_size
    print(f"{args.rows:,} rows, {size / 1e6:.1f} MB CSV; best of {args.repeat}")
    table = parse_ddl(DDL, "signatures")
    assert table is not None
    file = CsvFile.open(export)
    stop = threading.Event()
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema_name)))
    target = sql.Identifier(schema_name, "signatures")
    pg = PostgresLoader(PostgresWarehouseConfig(type="postgres", dsn=args.dsn, schema=schema_name))
    try:

        def empty_table() -> None:
            admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            admin.execute(DDL.replace("public.signatures", f'"{schema_name}".signatures'))

        def psql_copy() -> None:
            command = f"\\copy \"{schema_name}\".signatures FROM '{export}' CSV HEADER"
            subprocess.run(["psql", args.dsn, "-q", "-c", command], check=True)

        def psql_copy_null() -> None:  # the same options as headrace's COPY: "" is NULL too
            columns = ", ".join(c.name for c in table.columns)
            command = (
                f"\\copy \"{schema_name}\".signatures FROM '{export}' "
                f"WITH (FORMAT csv, HEADER true, FORCE_NULL ({columns}))"
            )
            subprocess.run(["psql", args.dsn, "-q", "-c", command], check=True)

        def ours(mode: str) -> Callable[[], None]:
            def run() -> None:
                result = pg.load(
                    LoadPlan("signatures", mode, [file], table, uuid.uuid4().hex),  # type: ignore[arg-type]
                    None,
                    stop,
                )
                assert sum(result.rows_per_file) == args.rows

            return run

        results: dict[str, float] = {
            "psql": float("inf"),
            "psql_null": float("inf"),
            "append": float("inf"),
            "replace": float("inf"),
        }
        for _ in range(args.repeat):  # interleaved: the machine is shared and noisy
            results["psql"] = min(results["psql"], best(1, psql_copy, empty_table))
            results["psql_null"] = min(results["psql_null"], best(1, psql_copy_null, empty_table))
            results["append"] = min(results["append"], best(1, ours("append"), empty_table))
            results["replace"] = min(results["replace"], best(1, ours("replace"), empty_table))
        base = args.rows / results["psql"]
        print("PostgreSQL")
        print(f"  psql \\copy (baseline)        {base:>12,.0f} rows/s")
        same = args.rows / results["psql_null"]
        print(f"  psql \\copy, FORCE_NULL       {same:>12,.0f} rows/s   {same / base:.2f}x "
              "(headrace's options: a quoted empty field is NULL too)")  # fmt: skip
        for mode in ("append", "replace"):
            rate = args.rows / results[mode]
            print(f"  headrace {mode:<8}             {rate:>12,.0f} rows/s   {rate / base:.2f}x")

        duck_path = work / "bench.duckdb"
        duck = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path=str(duck_path)), work)

        def fresh_duck() -> None:
            duck_path.unlink(missing_ok=True)

        def duck_read_csv() -> None:
            with duckdb.connect(str(duck_path)) as conn:
                conn.execute("CREATE TABLE signatures AS SELECT * FROM read_csv(?)", [str(export)])

        def duck_ours() -> None:
            plan = LoadPlan("signatures", "replace", [file], table, uuid.uuid4().hex)
            assert sum(duck.load(plan, None, stop).rows_per_file) == args.rows

        duck_base = duck_ours_t = float("inf")
        for _ in range(args.repeat):
            duck_base = min(duck_base, best(1, duck_read_csv, fresh_duck))
            duck_ours_t = min(duck_ours_t, best(1, duck_ours, fresh_duck))
        base = args.rows / duck_base
        rate = args.rows / duck_ours_t
        print("DuckDB")
        print(f"  read_csv (baseline)          {base:>12,.0f} rows/s")
        print(f"  headrace replace             {rate:>12,.0f} rows/s   {rate / base:.2f}x")
    finally:
        pg.close()
        admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_name))
        )
        admin.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
