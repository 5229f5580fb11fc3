"""The PostgreSQL warehouse against the real server on 127.0.0.1:5432."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from headrace.errors import LoadError
from headrace.loads.csvfile import CsvFile
from headrace.loads.schema import infer_schema, parse_ddl
from headrace.loads.warehouses import LoadPlan
from headrace.loads.warehouses.postgres import PostgresLoader, PostgresWarehouseConfig
from support.exportserver import COMPRESS, DSN, csv_rows, pg_rows, write

DDL = """
CREATE TABLE public.signatures (
    id integer NOT NULL,
    email character varying(20),
    extra public.hstore,
    created_at timestamp without time zone,
    consent boolean
);
ALTER TABLE ONLY public.signatures ADD CONSTRAINT signatures_pkey PRIMARY KEY (id);
"""


def loader(schema: str) -> PostgresLoader:
    return PostgresLoader(PostgresWarehouseConfig(type="postgres", dsn=DSN, schema=schema))


def plan(path: Path, mode: str, table: str = "t", schema_ddl: str | None = None) -> LoadPlan:
    file = CsvFile.open(path)
    schema = parse_ddl(schema_ddl, table) if schema_ddl else infer_schema(table, file, 1000)
    assert schema is not None
    return LoadPlan(table, mode, [file], schema, uuid.uuid4().hex)  # type: ignore[arg-type]


def test_ddl_types_hstore_and_nulls(pg_schema: str, tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbfid,email,extra,created_at,consent\n"
        b'1,a@x.org,"""k""=>""v""",2024-01-02 03:04:05,t\n'
        b'2,"",,,f\n'
        b'3,"b@x.org",,"2024-02-03 00:00:00",\n'
    )
    wh = loader(pg_schema)
    result = wh.load(
        plan(write(tmp_path / "s.csv.gz", COMPRESS["csv.gz"](data)), "replace", "signatures", DDL),
        None,
        threading.Event(),
    )
    assert result.rows_per_file == [3]
    rows = pg_rows(pg_schema, "signatures")
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[0][1:] == ("a@x.org", '"k"=>"v"', rows[0][3], True)
    assert rows[1][1:] == (None, None, None, False)  # empty strings, quoted or not, are NULL
    existing = wh.existing_schema("signatures")
    assert existing is not None and existing.primary_key == ("id",)
    assert [c.type for c in existing.columns][1] == "character varying(20)"
    wh.close()


def test_replace_append_merge_and_batch_keys(pg_schema: str, tmp_path: Path) -> None:
    wh = loader(pg_schema)
    stop = threading.Event()
    first = plan(write(tmp_path / "a.csv", csv_rows(100)), "replace")
    wh.load(first, None, stop)
    assert wh.count("t") == 100
    again = wh.load(first, None, stop)  # the same batch key: already in the table
    assert again.already_loaded and wh.count("t") == 100
    wh.load(
        plan(write(tmp_path / "b.csv.bz2", COMPRESS["csv.bz2"](csv_rows(50, 100))), "append"),
        None,
        stop,
    )
    assert wh.count("t") == 150
    wh.load(plan(write(tmp_path / "c.csv", csv_rows(10)), "replace"), None, stop)
    assert wh.count("t") == 10
    with psycopg.connect(DSN) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(
                psycopg.sql.Identifier(pg_schema, "t")
            )
        )
    merge = plan(write(tmp_path / "d.csv", csv_rows(5, 8, tag="new")), "merge")
    merge = LoadPlan("t", "merge", merge.files, wh.existing_schema("t"), uuid.uuid4().hex)  # type: ignore[arg-type]
    wh.load(merge, None, stop)
    rows = pg_rows(pg_schema, "t")
    assert [r[0] for r in rows] == list(range(13))
    assert rows[9][2] == "new9" and rows[1][2] == "v1"
    wh.close()


def test_bad_values_name_the_line_and_column(pg_schema: str, tmp_path: Path) -> None:
    wh = loader(pg_schema)
    wh.load(plan(write(tmp_path / "a.csv", csv_rows(10)), "replace"), None, threading.Event())
    bad = plan(write(tmp_path / "b.csv", b"id,name\n1,x\nnot-a-number,y\n"), "append")
    bad = LoadPlan("t", "append", bad.files, wh.existing_schema("t"), "k")  # type: ignore[arg-type]
    with pytest.raises(LoadError) as caught:
        wh.load(bad, None, threading.Event())
    assert caught.value.reason == "rejected_by_warehouse" and not caught.value.retriable
    assert "line 3" in str(caught.value) and "id" in str(caught.value)
    assert wh.count("t") == 10  # nothing of the failed load is left
    wh.close()


def test_unreachable_database_is_retriable(tmp_path: Path) -> None:
    wh = PostgresLoader(
        PostgresWarehouseConfig(
            type="postgres", dsn="host=127.0.0.1 port=1 user=x connect_timeout=2"
        )
    )
    with pytest.raises(LoadError) as caught:
        wh.load(plan(write(tmp_path / "a.csv", csv_rows(3)), "append"), None, threading.Event())
    assert caught.value.retriable and caught.value.reason == "warehouse_unavailable"
    secret = PostgresLoader(
        PostgresWarehouseConfig(type="postgres", dsn="postgresql://x:hunter%zz2@127.0.0.1:1/db")
    )
    with pytest.raises(LoadError) as caught:
        secret.load(plan(write(tmp_path / "b.csv", csv_rows(3)), "append"), None, threading.Event())
    assert "hunter" not in str(caught.value)


def test_readers_never_see_an_empty_or_partial_table(pg_schema: str, tmp_path: Path) -> None:
    wh = loader(pg_schema)
    stop = threading.Event()
    wh.load(plan(write(tmp_path / "small.csv", csv_rows(1000)), "replace"), None, stop)
    big = plan(write(tmp_path / "big.csv.gz", COMPRESS["csv.gz"](csv_rows(500_000))), "replace")
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        with psycopg.connect(DSN, autocommit=True) as conn:
            query = psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                psycopg.sql.Identifier(pg_schema, "t")
            )
            for _ in range(200_000):  # bounded
                try:
                    seen.append(conn.execute(query).fetchone()[0])
                except psycopg.Error as exc:
                    errors.append(exc)
                if done.is_set():
                    break
            seen.append(conn.execute(query).fetchone()[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = wh.load(big, None, stop)
    finally:
        done.set()
        reader.join(60)
    assert result.rows_per_file == [500_000]
    assert errors == []
    assert len(seen) > 10
    assert set(seen) <= {1000, 500_000}, sorted(set(seen))[:10]
    assert seen[0] == 1000 and seen[-1] == 500_000
    wh.close()


def test_full_exports_into_a_table_with_a_serial_column(pg_schema: str, tmp_path: Path) -> None:
    """The copy made with LIKE … INCLUDING ALL takes over the old table's sequence: the old
    table can be dropped, and the default keeps drawing from the same sequence."""
    table = psycopg.sql.Identifier(pg_schema, "t")
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(pg_schema)))
        conn.execute(
            psycopg.sql.SQL(
                "CREATE TABLE {} (id serial PRIMARY KEY, name text, note text, score numeric, "
                "active boolean, created_at timestamp)"
            ).format(table)
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), 500)", (table.as_string(conn),)
        )
    wh = loader(pg_schema)
    for number, rows in enumerate((30, 20)):  # full, then full again
        schema = wh.existing_schema("t")
        assert schema is not None and schema.origin == "existing"
        file = CsvFile.open(write(tmp_path / f"{number}.csv", csv_rows(rows)))
        result = wh.load(
            LoadPlan("t", "replace", [file], schema, f"k{number}"), None, threading.Event()
        )
        assert result.rows_per_file == [rows] and wh.count("t") == rows
    wh.close()
    with psycopg.connect(DSN, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY relname",
            (pg_schema,),
        ).fetchall()
        assert tables == [("_headrace_loads",), ("t",)]
        added = conn.execute(
            psycopg.sql.SQL("INSERT INTO {} (name) VALUES ('new') RETURNING id").format(table)
        ).fetchone()
        assert added == (501,)


def test_a_schema_with_percent_signs_loads(tmp_path: Path) -> None:
    # psycopg reads a % of a statement with parameters as a placeholder, inside a quoted name too
    from tests.support.pgschema import throwaway_schema

    with throwaway_schema("100% %s %%d ") as schema:
        wh = loader(schema)
        first = plan(write(tmp_path / "a.csv", b"id\n1\n"), "append")
        wh.load(first, None, threading.Event())
        assert wh.load(first, None, threading.Event()).already_loaded
        assert wh.count("t") == 1


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        ('CREATE TABLE t (id integer, "x\x00y" text);', "cannot hold NUL"),
        (f'CREATE TABLE t (id integer, "{"é" * 32}" text);', "1 to 63 bytes"),
    ],
)
def test_names_postgresql_cannot_hold_are_refused_before_any_statement(
    pg_schema: str, tmp_path: Path, ddl: str, message: str
) -> None:
    # libpq's quoting ends a name at a NUL ("x" would be created), PostgreSQL cuts at 63 bytes
    wh = loader(pg_schema)
    with pytest.raises(LoadError, match=message) as refused:
        wh.load(plan(write(tmp_path / "a.csv", b"id\n1\n"), "append", schema_ddl=ddl), None,
                threading.Event())  # fmt: skip
    assert refused.value.reason == "bad_name"
    with psycopg.connect(DSN) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,))
        assert found.fetchone() is None  # nothing was sent
