"""Table-export webhooks through a real `headrace serve`: a POST leads to a loaded table, and a
load whose worker is killed mid-way resumes and ends correct."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from support.exportserver import (
    COMPRESS,
    DSN,
    EXPORT_HOST,
    FileServer,
    csv_rows,
    pg_rows,
    serving,
    throwaway_schema,
)
from support.serverproc import ServerProcess

SECRET = "cs-secret"


@pytest.fixture
def export_server() -> Iterator[FileServer]:
    yield from serving(EXPORT_HOST)


@pytest.fixture
def schema() -> Iterator[str]:
    yield from throwaway_schema("hr_bulk_")


def pipeline(tmp_path: Path, schema: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"""
sources:
  controlshift:
    type: bulk_export
    path: /webhooks/controlshift
    auth: {{type: hmac, preset: controlshift, secrets: ["{SECRET}"]}}
    warehouse: {{type: postgres, dsn: "{DSN}", schema: {schema}}}
    tables: [people]
    lease: 2s
    retry_backoff: 0.2s
    batch: {{max_files: 10, max_age: 0.5s}}
    fetch: {{allow_networks: ["127.0.0.2/32"]}}
""")
    return path


def webhook(server: ServerProcess, kind: str, url: str) -> httpx.Response:
    event = {"type": f"data.{kind}_table_exported", "data": {"url": url, "table": "people"}}
    body = json.dumps(event).replace("&", "\\u0026").encode()  # as ControlShift escapes it
    return httpx.post(f"{server.url}/webhooks/controlshift", content=body,
                      headers={"X-ControlShift-Webhook-Signature": signature(body)}, timeout=10)  # fmt: skip


def signature(body: bytes) -> str:
    """ControlShift's: ``sha256:`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256:" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def count(schema: str) -> int:
    with psycopg.connect(DSN) as conn:
        try:
            query = psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                psycopg.sql.Identifier(schema, "people")
            )
            return int(conn.execute(query).fetchone()[0])  # type: ignore[index]
        except psycopg.errors.UndefinedTable:
            return -1


def wait_for(check: object, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def job_status(data_dir: Path, job_id: int) -> str | None:
    try:
        with sqlite3.connect(f"file:{data_dir / 'loads.db'}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT status FROM loads WHERE id = ?", (job_id,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def test_a_webhook_post_leads_to_a_loaded_table(
    tmp_path: Path, schema: str, export_server: FileServer
) -> None:
    server = ServerProcess(tmp_path / "data", config=pipeline(tmp_path, schema)).start()
    try:
        full = webhook(
            server,
            "full",
            export_server.add("/full.csv.gz", COMPRESS["csv.gz"](csv_rows(1000))) + "?a=1&sig=x",
        )
        assert full.status_code == 200 and full.json() == {"status": "processed", "load_id": 1}
        wait_for(lambda: count(schema) == 1000)
        for n in range(3):  # batched by the 0.5 s timer
            url = export_server.add(
                f"/inc{n}.csv.bz2", COMPRESS["csv.bz2"](csv_rows(100, 1000 + 100 * n))
            )
            assert webhook(server, "incremental", url).json()["status"] == "processed"
        assert webhook(server, "incremental", url).json()["duplicate"] is True
        wait_for(lambda: count(schema) == 1300)
        assert [r[0] for r in pg_rows(schema, "people")] == list(range(1300))
        loads = httpx.get(f"{server.url}/v1/loads", timeout=5).json()["loads"]
        assert [j["status"] for j in loads] == ["loaded"] * 4
        assert "sig=REDACTED" in loads[-1]["url"]
        wait_for(lambda: server.metrics().get(
            'headrace_loads_total{source="controlshift",status="loaded"}') == 4, timeout=10)  # fmt: skip
        assert (
            server.metrics()['headrace_load_rows_total{source="controlshift",table="people"}']
            == 1300
        )
        other = httpx.post(f"{server.url}/webhooks/controlshift", content=b'{"type":"x"}',
                           headers={"X-ControlShift-Webhook-Signature": signature(b'{"type":"x"}')})  # fmt: skip
        assert other.json()["status"] == "skipped"
    finally:
        assert server.stop() == 0


def _delivery_pid(server: ServerProcess) -> int:
    for pid in server.children():
        fds = Path(f"/proc/{pid}/fd")
        try:
            if any(os.readlink(fd).endswith("delivery.lock") for fd in fds.iterdir()):
                return pid
        except OSError:
            continue
    raise AssertionError("no delivery process")


def test_killing_the_worker_mid_load_resumes_the_job(
    tmp_path: Path, schema: str, export_server: FileServer
) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, config=pipeline(tmp_path, schema)).start()
    try:
        webhook(server, "full", export_server.add("/small.csv", csv_rows(1000)))
        wait_for(lambda: count(schema) == 1000)
        big = csv_rows(500_000, tag="big")
        job = webhook(
            server, "full", export_server.add("/big.csv.gz", COMPRESS["csv.gz"](big))
        ).json()["load_id"]
        wait_for(lambda: job_status(data_dir, job) == "loading", timeout=60)
        time.sleep(0.3)  # well inside the COPY
        os.kill(_delivery_pid(server), signal.SIGKILL)
        assert count(schema) == 1000  # the old table still stands
        wait_for(lambda: job_status(data_dir, job) == "loaded", timeout=120)
        assert count(schema) == 500_000
        # the load was under way when the worker died, and was taken up again
        assert server.log().count("loading 1 file(s) into people (replace)") == 3
        assert "delivery exited with code -9" in server.log()
        rows = pg_rows(schema, "people")
        assert rows[123_456][:3] == (123_456, "name 123456", "big123456")
        result = subprocess.run(
            [sys.executable, "-m", "headrace.cli", "loads", "show", str(job), "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "status:" in result.stdout and "loaded" in result.stdout
        assert "rows:              500000" in result.stdout
    finally:
        assert server.stop() == 0
