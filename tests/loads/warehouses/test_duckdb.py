"""The DuckDB warehouse: a real embedded database file."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import duckdb
import pytest

from headrace.errors import LoadError
from headrace.loads.csvfile import CsvFile
from headrace.loads.schema import Column, infer_schema, parse_ddl
from headrace.loads.warehouses import LoadPlan
from headrace.loads.warehouses.duckdb import DuckDBLoader, DuckDBWarehouseConfig, duckdb_type
from support.exportserver import COMPRESS, csv_rows, write

DDL = """
CREATE TABLE public.signatures (
    id integer NOT NULL,
    email character varying(20),
    extra public.hstore,
    amount numeric(12,2),
    created_at timestamp without time zone,
    consent boolean,
    PRIMARY KEY (id)
);
"""


def plan(path: Path, mode: str, table: str = "t", ddl: str | None = None, schema=None) -> LoadPlan:  # type: ignore[no-untyped-def]
    file = CsvFile.open(path)
    schema = schema or (parse_ddl(ddl, table) if ddl else infer_schema(table, file, 1000))
    return LoadPlan(table, mode, [file], schema, uuid.uuid4().hex)  # type: ignore[arg-type]


def rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f'SELECT * FROM main."{table}" ORDER BY id').fetchall()


def test_types_translate() -> None:
    assert duckdb_type(Column("a", "character varying(255)")) == "VARCHAR"
    assert duckdb_type(Column("a", "hstore")) == "VARCHAR"
    assert duckdb_type(Column("a", "numeric(12,2)")) == "DECIMAL(12,2)"
    assert duckdb_type(Column("a", "timestamp without time zone")) == "TIMESTAMP"
    assert duckdb_type(Column("a", "boolean")) == "BOOLEAN"
    assert duckdb_type(Column("a", "integer[]")) == "VARCHAR"


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "csv.bz2"])
def test_full_incremental_full_in_every_compression(tmp_path: Path, kind: str) -> None:
    wh = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path="w.duckdb"), tmp_path)
    stop = threading.Event()
    wh.load(
        plan(write(tmp_path / f"a.{kind}", COMPRESS[kind](csv_rows(100))), "replace"), None, stop
    )
    inc = plan(write(tmp_path / f"b.{kind}", COMPRESS[kind](csv_rows(20, 100))), "append")
    wh.load(inc, None, stop)
    assert wh.load(inc, None, stop).already_loaded
    assert wh.count("t") == 120
    loaded = rows(tmp_path / "w.duckdb", "t")
    assert loaded[7][2] == 'line one\nline "two" 7'  # quotes and newlines
    assert loaded[5][2] is None and loaded[11][5] is None  # empty fields are NULL
    wh.load(
        plan(write(tmp_path / f"c.{kind}", COMPRESS[kind](csv_rows(30))), "replace"), None, stop
    )
    assert wh.count("t") == 30


def test_ddl_with_pg_types_and_merge(tmp_path: Path) -> None:
    wh = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path="w.duckdb"), tmp_path)
    stop = threading.Event()
    data = (
        b"\xef\xbb\xbfid,email,extra,amount,created_at,consent\n"
        b'1,a@x.org,"""k""=>""v""",12.50,2024-01-02 03:04:05,t\n'
        b'2,"",,,,f\n'
    )
    wh.load(plan(write(tmp_path / "s.csv", data), "replace", "signatures", DDL), None, stop)
    assert rows(tmp_path / "w.duckdb", "signatures")[1][1:] == (None, None, None, None, False)
    existing = wh.existing_schema("signatures")
    assert existing is not None and existing.primary_key == ("id",)
    update = b"id,email\n2,new@x.org\n3,c@x.org\n3,c2@x.org\n"
    wh.load(
        plan(write(tmp_path / "u.csv", update), "merge", "signatures", schema=existing), None, stop
    )
    got = rows(tmp_path / "w.duckdb", "signatures")
    assert [(r[0], r[1]) for r in got] == [(1, "a@x.org"), (2, "new@x.org"), (3, "c2@x.org")]


def test_bad_values_fail_and_leave_the_table(tmp_path: Path) -> None:
    wh = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path="w.duckdb"), tmp_path)
    stop = threading.Event()
    wh.load(plan(write(tmp_path / "a.csv", csv_rows(10)), "replace"), None, stop)
    bad = plan(
        write(tmp_path / "b.csv", b"id,name\nx,1\n"), "replace", schema=wh.existing_schema("t")
    )
    with pytest.raises(LoadError, match="DuckDB refused the load of t"):
        wh.load(bad, None, stop)
    assert wh.count("t") == 10


@pytest.mark.parametrize("kind", ["csv.gz", "csv.bz2"])
def test_a_file_over_its_decompressed_cap_fails_the_load(tmp_path: Path, kind: str) -> None:
    # DuckDB decompresses gzip itself; headrace decompresses for it so the cap holds there too
    wh = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path="w.duckdb"), tmp_path)
    path = write(tmp_path / f"a.{kind}", COMPRESS[kind](csv_rows(2000)))
    file = CsvFile.open(path, max_decompressed=10_000)
    schema = infer_schema("t", file, 1000)
    with pytest.raises(LoadError) as caught:
        wh.load(LoadPlan("t", "replace", [file], schema, uuid.uuid4().hex), None, threading.Event())
    assert caught.value.reason == "decompressed_too_large"


def test_scratch_copies_are_never_shared_or_left_behind(tmp_path: Path) -> None:
    # two days' exports with the same file name: day 2 used to load day 1's scratch copy
    wh = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path="w.duckdb"), tmp_path)
    stop = threading.Event()
    (tmp_path / "day1").mkdir()
    (tmp_path / "day2").mkdir()
    day1 = write(tmp_path / "day1" / "t.csv.bz2", COMPRESS["csv.bz2"](csv_rows(30)))
    day2 = write(tmp_path / "day2" / "t.csv.bz2", COMPRESS["csv.bz2"](csv_rows(5, 100)))
    wh.load(plan(day1, "replace"), None, stop)
    stale = wh.scratch / "t.csv.bz2.plain.csv"  # the old shared name, as a crash left it
    stale.write_bytes(csv_rows(30))
    wh.load(plan(day2, "replace"), None, stop)
    wh.close()
    assert [r[0] for r in rows(tmp_path / "w.duckdb", "t")] == list(range(100, 105))
    assert sorted(p.name for p in wh.scratch.iterdir()) == [stale.name]  # nothing of ours left


def test_a_failed_load_removes_its_scratch_copy(tmp_path: Path) -> None:
    wh = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path="w.duckdb"), tmp_path)
    bad = write(tmp_path / "b.csv.gz", COMPRESS["csv.gz"](b"id\n1\nnot-a-number\n"))
    schema = infer_schema("t", CsvFile.open(write(tmp_path / "s.csv", b"id\n1\n")), 10)
    with pytest.raises(Exception):  # noqa: B017 - the conversion error, whatever its kind
        wh.load(plan(bad, "replace", schema=schema), None, threading.Event())
    wh.close()
    assert list(wh.scratch.iterdir()) == []


def test_a_merge_leaves_a_user_table_named_like_its_temp_table_alone(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        conn.execute("CREATE TABLE main._hr_merge (keep integer)")
        conn.execute("INSERT INTO main._hr_merge VALUES (7)")
    wh = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path="w.duckdb"), tmp_path)
    stop = threading.Event()
    data = b"id,email\n1,a@x.org\n2,b@x.org\n"
    wh.load(plan(write(tmp_path / "s.csv", data), "replace", "signatures", DDL), None, stop)
    update = b"id,email\n2,new@x.org\n3,c@x.org\n"
    existing = wh.existing_schema("signatures")
    wh.load(
        plan(write(tmp_path / "u.csv", update), "merge", "signatures", schema=existing), None, stop
    )
    wh.close()
    assert [r[:2] for r in rows(tmp_path / "w.duckdb", "signatures")] == [
        (1, "a@x.org"), (2, "new@x.org"), (3, "c@x.org")
    ]  # fmt: skip
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT keep FROM main._hr_merge").fetchall() == [(7,)]


def test_reserved_table_names_are_refused_in_the_pipeline_file() -> None:
    from pydantic import ValidationError

    from headrace.config.bulk import BulkExportSource

    with pytest.raises(ValidationError, match="reserved"):
        BulkExportSource.model_validate(
            {"type": "bulk_export", "path": "/w", "warehouse": {"type": "duckdb"},
             "tables": ["people", "_headrace_loads"]}
        )  # fmt: skip


def test_a_header_name_with_a_line_break_is_refused(tmp_path: Path) -> None:
    # read_csv(header = true) skips one physical line: such a file loaded as no rows at all
    path = write(tmp_path / "t.csv", b'"a\nb",c\n1,2\n')
    wh = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb"), tmp_path)
    with pytest.raises(LoadError, match="line break") as refused:
        wh.load(plan(path, "replace"), None, threading.Event())
    assert refused.value.reason == "bad_csv"
    assert not (tmp_path / "warehouse.duckdb").exists()
