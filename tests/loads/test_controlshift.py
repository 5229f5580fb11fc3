"""ControlShift's contract, end to end: its webhook bodies and signatures in, through the ingest
app, the fetch from a real export server and a load into real PostgreSQL."""

from __future__ import annotations

import csv
import gzip
import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from headrace.cli import main
from headrace.config.load import parse_pipeline
from headrace.config.models import Pipeline
from headrace.errors import LoadError
from headrace.loads.csvfile import CsvFile
from headrace.loads.schema import Column, parse_ddl, schema_from_files
from headrace.loads.warehouses import LoadPlan
from headrace.loads.warehouses.duckdb import DuckDBLoader, DuckDBWarehouseConfig
from headrace.loads.warehouses.redshift import RedshiftLoader, RedshiftWarehouseConfig
from headrace.loads.worker import LoadRunner
from headrace.server.app import WorkerApp
from support.exportserver import DSN, FileServer, csv_rows, pg_rows, write

SECRET = "cs-webhook-secret"
TABLES_SQL = Path(__file__).parent / "fixtures" / "controlshift_tables.sql"


def pipeline(schema: str, schemas: Path | None = None) -> Pipeline:
    return parse_pipeline(f"""
sources:
  controlshift:
    type: bulk_export
    path: /webhooks/controlshift
    auth: {{type: hmac, preset: controlshift, secrets: ["{SECRET}"]}}
    warehouse: {{type: postgres, dsn: "{DSN}", schema: "{schema}"}}
    schemas: {json.dumps(str(schemas)) if schemas else "null"}
    fetch: {{allow_networks: ["127.0.0.2/32"], attempts: 1}}
    batch: {{max_age: 0s}}
    retry_backoff: 0s
""")


def controlshift_body(table: str, url: str) -> bytes:
    """A webhook body as ControlShift (Rails) writes it: compact, ``&`` escaped as ``\\u0026``."""
    event = {"type": "data.full_table_exported", "data": {"url": url, "table": table}}
    return json.dumps(event, separators=(",", ":")).replace("&", "\\u0026").encode()


def signature(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-ControlShift-Webhook-Signature": f"sha256:{digest}"}


@pytest.fixture
async def app(pg_schema: str, data_dir: Path) -> AsyncIterator[WorkerApp]:
    app = WorkerApp(pipeline(pg_schema, TABLES_SQL), data_dir)
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


async def deliver(app: WorkerApp, body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.post("/webhooks/controlshift", content=body, headers=signature(body))


def run_jobs(app: WorkerApp, data_dir: Path, seconds: float = 60) -> None:
    """Fetch and load every job of the source (the serve process's load worker, in-line)."""
    runner = LoadRunner("controlshift", app.pipeline.bulk_sources()["controlshift"], data_dir)
    deadline = time.monotonic() + seconds
    try:
        while runner.history.active("controlshift"):
            assert time.monotonic() < deadline, runner.history.active("controlshift")
            if not (runner.fetch_next() | runner.load_ready()):
                time.sleep(0.02)
    finally:
        runner.warehouse.close()


@pytest.mark.anyio
async def test_the_url_is_fetched_as_the_json_decodes_it(
    app: WorkerApp, data_dir: Path, pg_schema: str, export_server: FileServer
) -> None:
    # ControlShift's \u0026 is an "&" once decoded; an "&amp;" the sender put in a query value
    # is its own and must reach the export server byte for byte (S3 would refuse a signature
    # whose query had been rewritten)
    escaped = export_server.add("/people_1.csv", csv_rows(30)) + "?X-Amz-Expires=86400&sig=a1"
    literal = export_server.add("/people_2.csv", csv_rows(20)) + "?note=fish&amp;chips&sig=b2"
    first = await deliver(app, controlshift_body("people", escaped))
    assert b"\\u0026" in controlshift_body("people", escaped)
    assert (first.status_code, first.json()["status"]) == (200, "processed"), first.text
    run_jobs(app, data_dir)
    second = await deliver(app, controlshift_body("visitors", literal))
    assert second.status_code == 200, second.text
    run_jobs(app, data_dir)
    paths = [path for path, _headers in export_server.requests]
    assert paths == [
        "/people_1.csv?X-Amz-Expires=86400&sig=a1",
        "/people_2.csv?note=fish&amp;chips&sig=b2",
    ]
    assert len(pg_rows(pg_schema, "people")) == 30
    assert len(pg_rows(pg_schema, "visitors")) == 20


# -- ControlShift's tables.sql ----------------------------------------------------------------

SIGNATURE_COLUMNS = [
    "id", "petition_id", "user_id", "email", "first_name", "last_name", "postcode",
    "phone_number", "join_organisation", "deleted_at", "unsubscribe_at", "created_at",
    "updated_at", "cached_organisation_slug", "source", "external_constituent_id", "member_id",
    "additional_fields", "eu_data_processing_consent", "consent_content_version_id", "utm_params",
    "uuid",
]  # fmt: skip


def signatures_csv(rows: int) -> bytes:
    """A signatures export as ControlShift writes one: every column, hstore text, empty NULLs."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SIGNATURE_COLUMNS)
    for i in range(1, rows + 1):
        stamp = f"2024-03-{1 + i % 28:02d} 10:{i % 60:02d}:00"
        writer.writerow([
            i, 100 + i % 4, "" if i % 3 else 7000 + i, f"signer{i}@example.org", f"Ana {i}",
            "O'Brien, Jr." if i % 10 == 0 else f"Lee{i}", f"N{i % 9} 1AA", "",
            "true" if i % 2 else "false", "", "", stamp, stamp, "campact", "facebook", "",
            2**40 + i, f'"employer"=>"Acme {i}", "note"=>"line one\nline two"', "true", 3,
            '{"utm_source":"email"}', f"6f1c0c2a-5b1d-4b8e-9d1a-{i:012d}",
        ])  # fmt: skip
    return out.getvalue().encode()


def test_tables_sql_defines_every_table_and_its_drops_are_skipped() -> None:
    tables = ["signatures", "petitions", "members", "donations", "events"]
    schemas = {t: schema_from_files(str(TABLES_SQL), t) for t in tables}
    signatures = schemas["signatures"]
    assert signatures is not None and signatures.origin == "ddl"
    assert [c.name for c in signatures.columns] == SIGNATURE_COLUMNS
    donations = schemas["donations"]
    assert donations is not None
    assert [(c.name, c.type) for c in donations.columns] == [
        ("id", "bigint"), ("amount", "numeric(10,2)"), ("currency", "character varying(max)"),
        ("member_id", "bigint"), ("recurring", "boolean"), ("fee_percentage", "double precision"),
        ("donated_on", "date"), ("created_at", "timestamp without time zone"),
    ]  # fmt: skip
    assert all(s is not None for s in schemas.values())
    assert schemas["events"] is not None
    assert schemas["events"].column("description") == Column("description", "text")
    # a DROP alone defines nothing, and is never mistaken for the table
    assert parse_ddl("DROP TABLE IF EXISTS signatures;\n", "signatures") is None


def test_tables_sql_types_in_each_warehouse(tmp_path: Path) -> None:
    """varchar(max) is text in PostgreSQL and DuckDB, and stays varchar(max) in Redshift."""
    schema = schema_from_files(str(TABLES_SQL), "donations")
    assert schema is not None
    file = CsvFile.open(write(tmp_path / "donations.csv", b"id,amount\n1,5.00\n"))
    plan = LoadPlan("donations", "replace", [file], schema, "k1")
    config = RedshiftWarehouseConfig(
        type="redshift", s3_prefix="s3://exports/hr/", iam_role="arn:aws:iam::1:role/L"
    )
    sql = RedshiftLoader(config).statements(plan).sql
    created = [s for s in sql if s.startswith('CREATE TABLE "public"."_hr_new_')]
    assert len(created) == 1
    assert created[0].split(" (", 1)[1] == (
        '"id" BIGINT, "amount" NUMERIC(10,2), "currency" CHARACTER VARYING(MAX), '
        '"member_id" BIGINT, "recurring" BOOLEAN, "fee_percentage" DOUBLE PRECISION, '
        '"donated_on" DATE, "created_at" TIMESTAMP WITHOUT TIME ZONE)'
    )
    # the file's DROP statements are not run: the only DROPs are of headrace's own tables
    assert all("_hr_" in s for s in sql if s.startswith("DROP"))
    events = schema_from_files(str(TABLES_SQL), "events")
    assert events is not None
    plan = LoadPlan("events", "append", [file], events, "k2")
    create = next(s for s in RedshiftLoader(config).statements(plan).sql if '"events" (' in s)
    assert '"title" CHARACTER VARYING(MAX)' in create
    assert '"description" VARCHAR(65535)' in create  # Redshift's TEXT is 256 bytes
    # DuckDB: a real load, and the column is DuckDB's unbounded VARCHAR
    duck = DuckDBLoader(DuckDBWarehouseConfig(type="duckdb", path="w.duckdb"), tmp_path)
    duck.load(LoadPlan("donations", "replace", [file], schema, "k3"), None, threading.Event())
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_name = 'donations'").fetchall())  # fmt: skip
    assert types["currency"] == "VARCHAR" and types["amount"] == "DECIMAL(10,2)"


def pg_types(schema: str, table: str) -> dict[str, str]:
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        ).fetchall()
    return dict(rows)


@pytest.mark.anyio
async def test_a_full_export_loads_with_the_tables_sql_schema(
    app: WorkerApp, data_dir: Path, pg_schema: str, export_server: FileServer
) -> None:
    url = export_server.add("/signatures_full.csv.gz", gzip.compress(signatures_csv(500)))
    answer = await deliver(app, controlshift_body("signatures", url + "?X-Amz-Signature=abc"))
    assert answer.json()["status"] == "processed", answer.text
    run_jobs(app, data_dir)
    assert app.pipeline.bulk_sources()["controlshift"].schemas == str(TABLES_SQL)
    types = pg_types(pg_schema, "signatures")
    assert types["email"] == types["additional_fields"] == "text"  # CHARACTER VARYING(max)
    assert (types["join_organisation"], types["member_id"], types["uuid"]) == (
        "boolean",
        "bigint",
        "character",
    )
    assert types["created_at"] == "timestamp without time zone"
    rows = pg_rows(pg_schema, "signatures")
    assert len(rows) == 500
    tenth = dict(zip(SIGNATURE_COLUMNS, rows[9], strict=True))
    assert tenth["last_name"] == "O'Brien, Jr." and tenth["user_id"] is None
    assert tenth["additional_fields"] == '"employer"=>"Acme 10", "note"=>"line one\nline two"'
    assert tenth["member_id"] == 2**40 + 10 and tenth["join_organisation"] is False
    assert tenth["created_at"] == datetime(2024, 3, 11, 10, 10)
    assert tenth["uuid"] == "6f1c0c2a-5b1d-4b8e-9d1a-000000000010"


def test_headrace_load_takes_tables_sql_as_ddl(tmp_path: Path, pg_schema: str) -> None:
    export = write(tmp_path / "donations.csv", (
        b"id,amount,currency,member_id,recurring,fee_percentage,donated_on,created_at\n"
        b"1,25.50,EUR,9000000001,true,0.029,2024-05-01,2024-05-01 09:30:00\n"
        b"2,5.00,GBP,,false,,2024-05-02,2024-05-02 18:00:00\n"
    ))  # fmt: skip
    result = CliRunner().invoke(main, [
        "load", str(export), "-t", "donations", "-m", "full", "--postgres", DSN,
        "--schema", pg_schema, "--ddl", str(TABLES_SQL), "-d", str(tmp_path / "data"),
    ], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pg_types(pg_schema, "donations")["currency"] == "text"
    assert pg_types(pg_schema, "donations")["amount"] == "numeric"
    assert pg_rows(pg_schema, "donations") == [
        (1, Decimal("25.50"), "EUR", 9000000001, True, 0.029, date(2024, 5, 1),
         datetime(2024, 5, 1, 9, 30)),
        (2, Decimal("5.00"), "GBP", None, False, None, date(2024, 5, 2),
         datetime(2024, 5, 2, 18, 0)),
    ]  # fmt: skip


BAD_TABLES_SQL = """\
DROP TABLE IF EXISTS members;
CREATE TABLE members ("id" integer, "email" CHARACTER VARYING(max), "created_at" TIMESTAMP WITHOUT TIME ZONE);
DROP TABLE IF EXISTS petitions;
CREATE TABLE petitions (
    "id" integer,
    "location" GEOMETRY(POINT, 4326),
    "title" CHARACTER VARYING(max)
);
DROP TABLE IF EXISTS actions;
CREATE TABLE actions ("id" integer, "payload" SUPER, "created_at" TIMESTAMP WITHOUT TIME ZONE);
"""


def test_an_unsupported_type_names_table_column_and_line(tmp_path: Path, pg_schema: str) -> None:
    ddl = write(tmp_path / "tables.sql", BAD_TABLES_SQL.encode())
    assert schema_from_files(str(ddl), "members") is not None  # the other tables are fine
    with pytest.raises(LoadError) as refused:
        schema_from_files(str(ddl), "petitions")
    assert str(refused.value) == (
        f"{ddl}: line 6: table petitions: column location: unsupported type 'geometry(point, 4326)'"
    )
    # words the reader takes but PostgreSQL has no type for: named the same way, by the CLI
    export = write(tmp_path / "actions.csv", b"id,payload,created_at\n1,{},2024-01-01\n")
    result = CliRunner().invoke(main, [
        "load", str(export), "-t", "actions", "-m", "full", "--postgres", DSN,
        "--schema", pg_schema, "--ddl", str(ddl), "-d", str(tmp_path / "data"),
    ], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 1
    assert (
        f"{ddl}: line 10: table actions: column payload: PostgreSQL has no type 'super'"
        in result.output
    )
