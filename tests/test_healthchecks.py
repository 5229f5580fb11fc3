"""``headrace validate --connect``: what a pipeline names is asked whether it answers, and
nothing is written; what is unreachable is named with its path in the file."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import psycopg

from support.exportserver import DSN
from support.serverproc import free_port

PIPELINE = """\
sources:
  web: {type: http}
  exports:
    type: bulk_export
    path: /webhooks/exports
    warehouse: {type: postgres, dsn: "host=127.0.0.1 port=%(closed)d user=postgres connect_timeout=2"}
transforms:
  lookup: {type: enrich_http, inputs: [web], url: "http://127.0.0.1:%(closed)d/users/{id}"}
sinks:
  good_pg: {type: postgres, inputs: [web], dsn: "%(dsn)s", schema: "%(schema)s", table: never_made}
  dead_pg:
    type: postgres
    inputs: [web]
    dsn: "host=127.0.0.1 port=%(closed)d user=postgres connect_timeout=2"
    table: t
  bucket: {type: s3, inputs: [lookup], bucket: %(bucket)s, endpoint_url: %(moto)s, format: ndjson}
  missing: {type: s3, inputs: [web], bucket: no-such-%(bucket)s, endpoint_url: %(moto)s, format: ndjson}
  files: {type: lake, inputs: [web], path: "%(lake)s"}
"""


def test_validate_connect_names_what_is_unreachable_and_writes_nothing(
    tmp_path: Path, moto_url: str
) -> None:
    bucket = f"hc-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    schema = f"hc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE % {"closed": free_port(), "dsn": DSN, "schema": schema,
                                  "bucket": bucket, "moto": moto_url, "lake": tmp_path / "lake"})  # fmt: skip
    try:
        plain = subprocess.run([sys.executable, "-m", "headrace.cli", "validate", str(config)],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert plain.returncode == 0, plain.stderr  # without --connect nothing is asked
        checked = subprocess.run(
            [sys.executable, "-m", "headrace.cli", "validate", "--connect", str(config)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert checked.returncode == 1
        out, err = checked.stdout, checked.stderr
        for reachable in ("sinks.good_pg", "sinks.bucket", "sinks.files"):
            assert f"{reachable}: reachable" in out, out + err
        assert "error: sinks.dead_pg: unreachable: cannot connect to PostgreSQL" in err
        assert "error: sinks.missing: unreachable: bucket no-such-" in err
        assert "error: transforms.lookup: unreachable: cannot connect to 127.0.0.1:" in err
        assert "error: sources.exports.warehouse: unreachable: cannot connect to PostgreSQL" in err
        assert "4 unreachable" in err
        with psycopg.connect(DSN) as conn:  # nothing was created
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)
            ).fetchone()
        assert tables == (0,)
        assert not (tmp_path / "lake").exists()
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(schema)
                )
            )
