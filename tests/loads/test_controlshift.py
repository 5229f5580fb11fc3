"""ControlShift's contract, end to end: its webhook bodies and signatures in, through the ingest
app, the fetch from a real export server and a load into real PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from exportserver import DSN, FileServer, csv_rows, pg_rows
from headrace.config.load import parse_pipeline
from headrace.config.models import Pipeline
from headrace.ingest.app import IngestApp
from headrace.loads.worker import LoadRunner

SECRET = "cs-webhook-secret"


def pipeline(schema: str) -> Pipeline:
    return parse_pipeline(f"""
sources:
  controlshift:
    type: bulk_export
    path: /webhooks/controlshift
    auth: {{type: hmac, preset: controlshift, secrets: ["{SECRET}"]}}
    warehouse: {{type: postgres, dsn: "{DSN}", schema: "{schema}"}}
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
async def app(pg_schema: str, data_dir: Path) -> AsyncIterator[IngestApp]:
    app = IngestApp(pipeline(pg_schema), data_dir)
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


async def deliver(app: IngestApp, body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.post("/webhooks/controlshift", content=body, headers=signature(body))


def run_jobs(app: IngestApp, data_dir: Path, seconds: float = 60) -> None:
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
    app: IngestApp, data_dir: Path, pg_schema: str, export_server: FileServer
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
    second = await deliver(app, controlshift_body("members", literal))
    assert second.status_code == 200, second.text
    run_jobs(app, data_dir)
    paths = [path for path, _headers in export_server.requests]
    assert paths == [
        "/people_1.csv?X-Amz-Expires=86400&sig=a1",
        "/people_2.csv?note=fish&amp;chips&sig=b2",
    ]
    assert len(pg_rows(pg_schema, "people")) == 30
    assert len(pg_rows(pg_schema, "members")) == 20
