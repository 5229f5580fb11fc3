"""`headrace load` and `headrace loads ...` through the real command line."""

from __future__ import annotations

from pathlib import Path

import duckdb
from click.testing import CliRunner

from headrace.cli import main
from support.exportserver import COMPRESS, DSN, FileServer, csv_rows, pg_rows, write


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_load_a_file_into_duckdb_then_operate_the_history(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    db = str(tmp_path / "w.duckdb")
    export = write(tmp_path / "people.csv.bz2", COMPRESS["csv.bz2"](csv_rows(250)))
    code, out = run("load", str(export), "-t", "people", "-m", "full", "--duckdb", db, "-d", data)
    assert code == 0, out
    assert "load 1: loaded 250 rows into people" in out
    code, out = run(
        "load", str(export), "-t", "people", "-m", "incremental", "--duckdb", db, "-d", data
    )
    assert code == 0 and "loaded 250 rows" in out
    with duckdb.connect(db, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone() == (500,)
    code, out = run("loads", "list", "-d", data)
    assert code == 0
    lines = out.splitlines()
    assert "status" in lines[0] and "loaded" in lines[1] and "incremental" in lines[1]
    code, out = run("loads", "show", "1", "-d", data)
    assert "kind:              full" in out and "rows:              250" in out
    code, out = run("loads", "retry", "1", "-d", data)
    assert code == 1 and "run `headrace load` again" in out
    code, out = run("loads", "cancel", "1", "-d", data)
    assert code == 1 and "already loaded" in out
    code, out = run("loads", "show", "9", "-d", data)
    assert code == 2 and "no load job 9" in out


def test_load_a_url_into_postgres_with_a_ddl(
    tmp_path: Path, pg_schema: str, export_server: FileServer
) -> None:
    ddl = write(tmp_path / "t.sql", b"CREATE TABLE t (id integer PRIMARY KEY, name text, note text,"
                b" score numeric(10,1), active boolean, created_at timestamp without time zone);")  # fmt: skip
    url = export_server.add("/t.csv.gz", COMPRESS["csv.gz"](csv_rows(40)))
    args = ["load", url + "?token=s3", "-t", "t", "-m", "full", "--postgres", DSN,
            "--schema", pg_schema, "--ddl", str(ddl), "-d", str(tmp_path / "data")]  # fmt: skip
    code, out = run(*args)
    assert code == 1, out
    assert "load 1 failed: 127.0.0.2 resolves to a loopback address 127.0.0.2" in out
    assert export_server.requests == []
    code, out = run(*args, "--allow-network", "127.0.0.2/32")
    assert code == 0, out
    assert len(pg_rows(pg_schema, "t")) == 40
    code, out = run("loads", "show", "2", "-d", str(tmp_path / "data"))
    assert "token=REDACTED" in out and "s3" not in out.split("token=")[1].splitlines()[0]


def test_load_refuses_a_missing_file_and_a_missing_warehouse(tmp_path: Path) -> None:
    code, out = run("load", str(tmp_path / "nope.csv"), "-t", "t", "-m", "full", "--duckdb", "x")
    assert code == 2 and "no such file" in out
    export = write(tmp_path / "a.csv", b"id\n1\n")
    code, out = run("load", str(export), "-t", "t", "-m", "full")
    assert code == 2 and "--postgres" in out
