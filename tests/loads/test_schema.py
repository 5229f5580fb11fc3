"""Target schemas from DDL dumps and from CSV values."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.errors import LoadError
from headrace.loads.csvfile import CsvFile
from headrace.loads.schema import (
    _FLOAT,
    Column,
    _fits,
    infer_schema,
    parse_ddl,
    schema_from_files,
)
from support.exportserver import write

PG_DUMP = """
--
-- PostgreSQL database dump
--
SET statement_timeout = 0;
CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;

CREATE TABLE public.signatures (
    id integer NOT NULL,
    petition_id integer,
    email character varying(255) NOT NULL,
    "First Name" character varying(100),
    additional_fields public.hstore,
    amount numeric(12,2) DEFAULT 0.0,
    tags text[],
    created_at timestamp without time zone NOT NULL,
    updated_at timestamp with time zone,
    eu_data_processing_consent boolean DEFAULT false,
    CONSTRAINT email_present CHECK (email <> '')
);

CREATE TABLE public.members (
    id bigint PRIMARY KEY,
    email text
);

ALTER TABLE ONLY public.signatures
    ADD CONSTRAINT signatures_pkey PRIMARY KEY (id);
CREATE INDEX index_signatures_on_petition_id ON public.signatures USING btree (petition_id);
"""


def test_pg_dump_tables_with_their_types_and_keys() -> None:
    schema = parse_ddl(PG_DUMP, "signatures")
    assert schema is not None and schema.origin == "ddl"
    assert schema.primary_key == ("id",)
    assert [(c.name, c.type) for c in schema.columns] == [
        ("id", "integer"),
        ("petition_id", "integer"),
        ("email", "character varying(255)"),
        ("First Name", "character varying(100)"),
        ("additional_fields", "hstore"),
        ("amount", "numeric(12,2)"),
        ("tags", "text[]"),
        ("created_at", "timestamp without time zone"),
        ("updated_at", "timestamp with time zone"),
        ("eu_data_processing_consent", "boolean"),
    ]
    members = parse_ddl(PG_DUMP, "members")
    assert members is not None and members.primary_key == ("id",)
    assert parse_ddl(PG_DUMP, "petitions") is None


def test_schema_files_by_directory_or_dump(tmp_path: Path) -> None:
    write(tmp_path / "ddl" / "members.sql", PG_DUMP.encode())
    assert schema_from_files(str(tmp_path / "ddl"), "members") is not None
    assert schema_from_files(str(tmp_path / "ddl"), "signatures") is None  # not members.sql
    write(tmp_path / "dump.sql", PG_DUMP.encode())
    assert schema_from_files(str(tmp_path / "dump.sql"), "signatures") is not None


def test_a_type_that_is_not_a_type_is_refused() -> None:
    for ddl in ("CREATE TABLE t (a integer/**/DROP, b text)", 'CREATE TABLE t (a "x"y)'):
        with pytest.raises(LoadError, match="unsupported type"):
            parse_ddl(ddl, "t")


def test_types_are_inferred_from_values(tmp_path: Path) -> None:
    data = (
        "id,score,flag,day,at,at_tz,name,sparse\n"
        "1,1.5,t,2024-01-01,2024-01-01 10:00:00,2024-01-01T10:00:00Z,a,\n"
        "2,2,false,2024-01-02,2024-01-02,2024-01-01 10:00:00+02:00,7,\n"
    )
    file = CsvFile.open(write(tmp_path / "x.csv", data.encode()))
    schema = infer_schema("x", file, 100)
    assert schema.columns == (
        Column("id", "bigint"),
        Column("score", "double precision"),
        Column("flag", "boolean"),
        Column("day", "date"),
        Column("at", "timestamp without time zone"),
        Column("at_tz", "timestamp with time zone"),
        Column("name", "text"),
        Column("sparse", "text"),
    )


def test_header_must_name_known_columns(tmp_path: Path) -> None:
    schema = parse_ddl(PG_DUMP, "members")
    assert schema is not None
    file = CsvFile.open(write(tmp_path / "m.csv", b"id,email,phone\n1,a@b,5\n"))
    with pytest.raises(LoadError, match=r"m.csv: line 1: column\(s\) 'phone'"):
        schema.check_header(file)


@pytest.mark.parametrize(
    ("value", "double"),
    [("1.5", True), ("1.", True), (".5", True), ("-2e10", True), ("+3.25E-2", True),
     ("1.2.3", False), ("e5", False), (".", False), ("1e", False), ("1" * 65, False)],
)  # fmt: skip
def test_number_shapes(value: str, double: bool) -> None:
    assert ("double precision" in _fits(value)) is double


@pytest.mark.timeout(20)  # the old pattern needed about 45 s here, holding the GIL
def test_a_long_run_of_digits_is_typed_at_once(tmp_path: Path) -> None:
    data = b"n\n" + b"1" * 40_000 + b"x\n"
    schema = infer_schema("x", CsvFile.open(write(tmp_path / "d.csv", data)), 100)
    assert schema.columns == (Column("n", "text"),)
    assert _FLOAT.match("1" * 40_000 + "x") is None  # the pattern itself, without the length cap


def test_quoted_names_keep_what_looks_like_sql_inside_them() -> None:
    # "--" inside a quoted name is no comment, a quoted key may hold ")" and ",", a CR is part
    # of the name, and "primary key" inside a column's name makes no key
    ddl = (
        'CREATE TABLE "t--x" (\n    "a--b" text,\n    "c),d" integer,\n    "primary key" text,\n'
        '    "e\rf" text,\n    PRIMARY KEY ("c),d", "a--b")\n);\n'
        'ALTER TABLE ONLY "t--x" ADD CONSTRAINT "k(" PRIMARY KEY ("c),d");\n'
    )
    schema = parse_ddl(ddl, "t--x")
    assert schema is not None
    assert [c.name for c in schema.columns] == ["a--b", "c),d", "primary key", "e\rf"]
    assert schema.primary_key == ("c),d",)


def test_a_ddl_file_keeps_a_cr_inside_a_quoted_name(tmp_path: Path) -> None:
    from headrace.loads.schema import schema_from_files

    path = tmp_path / "tables.sql"
    path.write_bytes(b'CREATE TABLE t (\r\n  "a\rb" text\r\n);\r\n')
    schema = schema_from_files(str(path), "t")
    assert schema is not None and [c.name for c in schema.columns] == ["a\rb"]
