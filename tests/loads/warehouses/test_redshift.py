"""The Redshift warehouse, checked on the statements and manifests it generates.

No Redshift server is reachable here: the two seams (S3 upload, SQL execution) are recording
fakes, and the SQL is checked as text.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import threading
from pathlib import Path
from typing import Any

from headrace.loads.csvfile import CsvFile, open_plain
from headrace.loads.schema import parse_ddl
from headrace.loads.warehouses import LoadPlan
from headrace.loads.warehouses.redshift import RedshiftLoader, RedshiftWarehouseConfig
from support.exportserver import write

DDL = """CREATE TABLE public.signatures (id integer NOT NULL, email character varying(255),
extra public.hstore, created_at timestamp without time zone, consent boolean, PRIMARY KEY (id));"""
CONFIG = RedshiftWarehouseConfig(
    type="redshift", s3_prefix="s3://exports-bucket/headrace/", iam_role="arn:aws:iam::1:role/Load",
    region="eu-west-1", schema="crm",
)  # fmt: skip


class Recorder:
    """Records uploads and statements; answers ``pg_last_copy_count()`` with the data rows of
    the files the session's last COPY named through its manifest, as Redshift would."""

    def __init__(self) -> None:
        self.puts: dict[str, bytes | str] = {}
        self.sql: list[str] = []
        self.last_copy_count = 0

    def put(self, url: str, data: bytes | None = None, path: str | None = None) -> None:
        self.puts[url] = data if data is not None else f"file:{path}"

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        self.sql.append(statement)
        if statement.startswith("COPY "):
            manifest = json.loads(self.puts[statement.split(" FROM '", 1)[1].split("'", 1)[0]])
            self.last_copy_count = sum(
                self._data_rows(str(self.puts[e["url"]])) for e in manifest["entries"]
            )
        if statement == "SELECT pg_last_copy_count()":
            return [(self.last_copy_count,)]
        return [(3,)] if statement.startswith("SELECT count(*)") else []

    @staticmethod
    def _data_rows(uploaded: str) -> int:  # IGNOREHEADER 1
        with open_plain(Path(uploaded.removeprefix("file:"))) as raw:
            return sum(1 for _ in csv.reader(io.TextIOWrapper(raw, "utf-8", newline=""))) - 1


def files(tmp_path: Path) -> list[CsvFile]:
    body = b"id,email\n1,a@x\n2,b@x\n"
    return [
        CsvFile.open(write(tmp_path / "a.csv.gz", gzip.compress(body))),
        CsvFile.open(write(tmp_path / "b.csv.gz", gzip.compress(body))),
        CsvFile.open(write(tmp_path / "c.csv.bz2", bz2.compress(body))),
    ]


def test_full_export_replaces_through_a_manifest(tmp_path: Path) -> None:
    schema = parse_ddl(DDL, "signatures")
    assert schema is not None
    plan = LoadPlan("signatures", "replace", files(tmp_path), schema, "k1")
    fake = Recorder()
    result = RedshiftLoader(CONFIG, fake, fake).load(plan, None, threading.Event())
    # two gzip files counted by one COPY, the bzip2 one alone by the other
    assert (result.rows_per_file, result.rows, result.rows_in_table) == ([None, None, 2], 6, 3)
    manifest_urls = [u for u in fake.puts if u.endswith(".json")]
    assert manifest_urls == ["s3://exports-bucket/headrace/k1/manifest-0.json",
                             "s3://exports-bucket/headrace/k1/manifest-1.json"]  # fmt: skip
    gz = json.loads(fake.puts[manifest_urls[0]])
    assert [e["url"] for e in gz["entries"]] == [
        "s3://exports-bucket/headrace/k1/0000-a.csv.gz",
        "s3://exports-bucket/headrace/k1/0001-b.csv.gz",
    ]
    assert all(e["mandatory"] for e in gz["entries"])
    assert (
        fake.puts["s3://exports-bucket/headrace/k1/0000-a.csv.gz"]
        == f"file:{tmp_path / 'a.csv.gz'}"
    )
    statements = fake.sql
    assert statements[1] == 'SELECT 1 FROM "crm"."_headrace_loads" WHERE batch_key = \'k1\''
    assert statements[-1] == 'SELECT count(*) FROM "crm"."signatures"'
    body = statements[2:-1]
    assert body[0] == "BEGIN" and body[-1] == "COMMIT"
    assert (
        'CREATE TABLE "crm"."_hr_new_' in body[2]
        and '"email" CHARACTER VARYING(255)' in body[2]
        and '"extra" VARCHAR(65535)' in body[2]
        and '"created_at" TIMESTAMP WITHOUT TIME ZONE' in body[2]
        and '"id" INTEGER NOT NULL' in body[2]
        and 'PRIMARY KEY ("id")' in body[2]
    )
    copies = [s for s in body if s.startswith("COPY")]
    counts = [i + 1 for i, s in enumerate(body) if s.startswith("COPY")]
    assert [body[i] for i in counts] == ["SELECT pg_last_copy_count()"] * 2
    assert max(counts) < body.index("COMMIT")  # in the COPY's session and transaction
    assert copies[0] == (
        f'COPY "crm"."_hr_new_{body[2].split("_hr_new_")[1][:16]}" ("id", "email") FROM '
        "'s3://exports-bucket/headrace/k1/manifest-0.json' IAM_ROLE 'arn:aws:iam::1:role/Load' "
        "MANIFEST FORMAT AS CSV IGNOREHEADER 1 GZIP EMPTYASNULL BLANKSASNULL TIMEFORMAT 'auto' "
        "DATEFORMAT 'auto' ACCEPTINVCHARS REGION 'eu-west-1'"
    )
    assert " BZIP2 " in copies[1]
    renames = [s for s in body if s.startswith("ALTER TABLE")]
    assert renames[0].startswith('ALTER TABLE "crm"."signatures" RENAME TO "_hr_old_')
    assert renames[1].endswith('RENAME TO "signatures"')
    assert body[-2] == (
        'INSERT INTO "crm"."_headrace_loads" (batch_key, table_name, mode) '
        "VALUES ('k1', 'signatures', 'replace')"
    )


def test_merge_is_delete_then_insert_in_one_transaction(tmp_path: Path) -> None:
    schema = parse_ddl(DDL, "signatures")
    assert schema is not None
    plan = LoadPlan("signatures", "merge", files(tmp_path)[:1], schema, "k2")
    statements = RedshiftLoader(CONFIG).statements(plan).sql
    assert 'CREATE TEMP TABLE _hr_merge (LIKE "crm"."signatures")' in statements
    assert (
        'DELETE FROM "crm"."signatures" USING _hr_merge WHERE "crm"."signatures"."id" = _hr_merge."id"'
        in statements
    )
    assert (
        statements.index("BEGIN")
        < statements.index('INSERT INTO "crm"."signatures" SELECT * FROM _hr_merge')
        < statements.index("COMMIT")
    )


def test_names_and_literals_are_quoted(tmp_path: Path) -> None:
    body = b'id,"we""ird"\n1,x\n'
    file = CsvFile.open(write(tmp_path / "q.csv", body))
    schema = parse_ddl('CREATE TABLE t (id integer, "we""ird" text)', "t")
    assert schema is not None
    config = CONFIG.model_copy(update={"iam_role": "arn:x'; DROP TABLE y; --"})
    sql = RedshiftLoader(config).statements(LoadPlan("t", "append", [file], schema, "k")).sql
    copy = next(s for s in sql if s.startswith("COPY"))
    assert '("id", "we""ird")' in copy
    assert "IAM_ROLE 'arn:x''; DROP TABLE y; --'" in copy


def test_an_already_loaded_batch_is_not_sent_again(tmp_path: Path) -> None:
    schema = parse_ddl(DDL, "signatures")
    assert schema is not None

    class Loaded(Recorder):
        def execute(self, statement: str) -> list[tuple[Any, ...]]:
            super().execute(statement)
            return [(1,)] if "batch_key = 'k3'" in statement else []

    fake = Loaded()
    result = RedshiftLoader(CONFIG, fake, fake).load(
        LoadPlan("signatures", "append", files(tmp_path), schema, "k3"), None, threading.Event()
    )
    assert result.already_loaded and fake.puts == {} and len(fake.sql) == 2
