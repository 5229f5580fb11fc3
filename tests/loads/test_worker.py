"""The load runner end to end (minus threads): export server → fetch → stage → PostgreSQL."""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from headrace.authorizers import Principal, RequestFacts
from headrace.authorizers.hmac import HmacAuth, HmacCheck
from headrace.config.bulk import BulkExportSource
from headrace.loads.worker import LoadRunner
from support.exportserver import COMPRESS, DSN, FileServer, csv_rows, pg_rows, write

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()


def source(schema: str, **settings: Any) -> BulkExportSource:
    return BulkExportSource.model_validate(
        {
            "type": "bulk_export",
            "path": "/webhooks/cs",
            "warehouse": {"type": "postgres", "dsn": DSN, "schema": schema},
            "fetch": {"allow_networks": ["127.0.0.2/32"], "backoff": 0.01, "attempts": 1},
            "batch": {"max_age": 0},
            "retry_backoff": 0,
            **settings,
        }
    )


def drain(runner: LoadRunner, seconds: float = 120) -> None:
    """Fetch and load until no job of the source is active (bounded)."""
    deadline = time.monotonic() + seconds
    while runner.history.active(runner.source_id):
        assert time.monotonic() < deadline, runner.history.active(runner.source_id)
        if not (runner.fetch_next() | runner.load_ready()):
            time.sleep(0.02)


def expected(data: bytes) -> list[tuple[Any, ...]]:
    out = []
    for row in list(csv.reader(io.StringIO(data.decode())))[1:]:
        i, name, note, score, active, created = row
        out.append((
            int(i), name, note or None, float(score), active == "t",
            datetime.fromisoformat(created) if created else None,
        ))  # fmt: skip
    return sorted(out)


def test_full_then_incremental_then_full(
    pg_schema: str, data_dir: Path, export_server: FileServer
) -> None:
    runner = LoadRunner("cs", source(pg_schema), data_dir)
    history = runner.history
    full1, inc1, inc2 = csv_rows(1000), csv_rows(200, 1000), csv_rows(100, 1200)
    history.record("cs", "people", "full", export_server.add("/f1.csv", full1) + "?sig=a", 3600)
    drain(runner)
    assert pg_rows(pg_schema, "people") == expected(full1)
    history.record(
        "cs",
        "people",
        "incremental",
        export_server.add("/i1.csv.gz", COMPRESS["csv.gz"](inc1)),
        3600,
    )
    history.record(
        "cs",
        "people",
        "incremental",
        export_server.add("/i2.csv.bz2", COMPRESS["csv.bz2"](inc2)),
        3600,
    )
    drain(runner)
    assert pg_rows(pg_schema, "people") == expected(
        full1 + inc1.split(b"\n", 1)[1] + inc2.split(b"\n", 1)[1]
    )
    big = csv_rows(500_000, tag="big")
    history.record(
        "cs", "people", "full", export_server.add("/f2.csv.gz", COMPRESS["csv.gz"](big)), 3600
    )
    drain(runner)
    got = pg_rows(pg_schema, "people")
    assert len(got) == 500_000
    assert got[::997] == expected(big)[::997]
    jobs = history.find(source="cs")
    assert [(j.status, j.rows) for j in jobs] == [
        ("loaded", 500_000),
        ("loaded", 100),
        ("loaded", 200),
        ("loaded", 1000),
    ]
    assert all(j.checksum and j.bytes for j in jobs)
    assert "sig=REDACTED" in jobs[-1].url
    runner.warehouse.close()


def test_incremental_files_are_batched_by_count_bytes_and_age(
    pg_schema: str, data_dir: Path, tmp_path: Path
) -> None:
    runner = LoadRunner("cs", source(pg_schema, batch={"max_files": 3, "max_age": 60}), data_dir)
    history = runner.history

    def staged(n: int, table: str = "t", kind: str = "incremental") -> None:
        job, _ = history.record("cs", table, kind, f"http://x.example/{table}{n}.csv", 3600)
        history.claim(job.id, runner.owner, 60)
        runner.stage_local(history.get(job.id), write(tmp_path / f"{n}.csv", csv_rows(10, n * 10)))

    for n in range(5):
        staged(n)
    batches = runner.plan()
    assert [[j.id for j in b] for b in batches] == [[1, 2, 3]]  # by count
    runner.load(batches[0])
    assert runner.plan() == []  # two wait for more, or for max_age
    assert [len(b) for b in runner.plan(now=time.time() + 61)] == [2]  # the timer flushes
    staged(5, kind="full")
    assert [[j.id for j in b] for b in runner.plan()] == [[4, 5]]  # a full export waits behind
    runner.load(runner.plan()[0])
    assert [[j.kind for j in b] for b in runner.plan()] == [["full"]]
    runner.load(runner.plan()[0])
    assert len(pg_rows(pg_schema, "t")) == 10
    by_bytes = LoadRunner(
        "cs", source(pg_schema, batch={"max_bytes": 500, "max_age": 60}), data_dir
    )
    for n in range(6, 9):
        staged(n)
    assert [len(b) for b in by_bytes.plan()] == [1]  # each file is over half the cap
    rows = {j.id: j.rows for j in history.find(source="cs")}
    assert rows[1] == rows[2] == rows[3] == 10
    assert {j.files for j in history.find(source="cs") if j.id <= 3} == {3}
    runner.warehouse.close()


class Receiver:
    """Takes notification POSTs."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_failures_end_with_a_clear_status_and_signed_notifications(
    pg_schema: str, data_dir: Path, export_server: FileServer, receiver: Receiver
) -> None:
    settings = source(pg_schema, max_attempts=2, notify={"url": receiver.url, "secret": SECRET},
                      fetch={"allow_networks": ["127.0.0.2/32"], "backoff": 0.01, "attempts": 1,
                             "read_timeout": 0.3})  # fmt: skip
    runner = LoadRunner("cs", settings, data_dir)
    history = runner.history
    export_server.add("/expired.csv", b"denied", status=403)
    export_server.add("/slow.csv", b"id\n1\n", delay=1)
    export_server.add("/bad.csv", b"id,name\nnot-a-number,x\n")
    cases = {
        "expired": export_server.url("/expired.csv?X-Amz-Signature=s&X-Amz-Expires=1"),
        "missing": export_server.url("/missing.csv"),
        "slow": export_server.url("/slow.csv"),
        "private": "http://10.1.2.3/x.csv",
        "redirect": export_server.add(
            "/r", status=302, headers={"Location": "http://127.0.0.1:1/"}
        ),
        "good": export_server.add("/good.csv", b"id,name\n1,x\n"),
    }
    ids = {name: history.record("cs", name, "full", url, 3600)[0].id for name, url in cases.items()}
    drain(runner)
    got = {name: history.get(i) for name, i in ids.items()}
    assert (got["expired"].status, got["expired"].reason) == ("expired", "url_expired")
    assert "signed URL has expired" in (got["expired"].error or "")
    assert (got["missing"].status, got["missing"].reason) == ("failed", "not_found")
    assert (got["slow"].status, got["slow"].reason, got["slow"].attempts) == (
        "failed",
        "timeout",
        2,
    )
    assert (got["private"].status, got["private"].reason) == ("failed", "forbidden_address")
    assert (got["redirect"].status, got["redirect"].reason) == ("failed", "forbidden_address")
    assert got["good"].status == "loaded" and got["good"].rows == 1
    runner.send_notifications()
    check = HmacCheck(HmacAuth(type="hmac", preset="standard-webhooks", secrets=[SECRET]))  # type: ignore[list-item]
    seen = {}
    for headers, body in receiver.posts:
        assert isinstance(
            check.check(RequestFacts(headers, body, "127.0.0.1"), time.time()), Principal
        )
        payload = json.loads(body)
        seen[payload["data"]["table"]] = payload
    assert set(seen) == set(cases)
    assert seen["good"]["type"] == "load.loaded" and seen["good"]["data"]["rows"] == 1
    assert seen["expired"]["data"]["status"] == "expired" and seen["missing"]["data"]["error"]
    runner.send_notifications()
    assert len(receiver.posts) == len(cases)  # each once
    runner.warehouse.close()


def test_a_job_taken_by_a_dead_worker_is_resumed(
    pg_schema: str, data_dir: Path, export_server: FileServer
) -> None:
    runner = LoadRunner("cs", source(pg_schema, lease=0.3), data_dir)
    history = runner.history
    job, _ = history.record("cs", "t", "full", export_server.add("/a.csv", csv_rows(50)), 3600)
    history.claim_fetch("cs", "crashed-worker", 0.3)  # took it, then died
    assert not runner.fetch_next()
    time.sleep(0.4)
    drain(runner)
    assert history.get(job.id).status == "loaded" and len(pg_rows(pg_schema, "t")) == 50
    runner.warehouse.close()


def test_a_batch_committed_just_before_its_worker_died_is_not_loaded_twice(
    pg_schema: str, data_dir: Path, tmp_path: Path
) -> None:
    runner = LoadRunner("cs", source(pg_schema, lease=0.2), data_dir)
    history = runner.history
    job, _ = history.record("cs", "t", "incremental", "http://x.example/a.csv", 3600)
    history.claim(job.id, runner.owner, 60)
    runner.stage_local(history.get(job.id), write(tmp_path / "a.csv", csv_rows(40)))
    # a worker claims the batch and commits it to the warehouse, then dies before the history
    key = history.claim_batch([history.get(job.id)], "dying-worker", 0.2)
    assert key is not None
    from headrace.loads.csvfile import CsvFile
    from headrace.loads.warehouses import LoadPlan, settle_schema

    files = [CsvFile.open(Path(history.get(job.id).staged_path or ""))]
    schema = settle_schema(runner.source, runner.warehouse, "t", "append", files)
    runner.warehouse.load(LoadPlan("t", "append", files, schema, key), None, threading.Event())
    time.sleep(0.3)
    drain(runner)
    assert history.get(job.id).status == "loaded"
    assert len(pg_rows(pg_schema, "t")) == 40  # not 80
    runner.warehouse.close()


def test_stopping_mid_load_gives_the_job_back_unharmed(
    pg_schema: str, data_dir: Path, tmp_path: Path
) -> None:
    runner = LoadRunner("cs", source(pg_schema), data_dir)
    history = runner.history
    first, _ = history.record("cs", "t", "full", "http://x.example/a.csv", 3600)
    history.claim(first.id, runner.owner, 60)
    runner.stage_local(history.get(first.id), write(tmp_path / "a.csv", csv_rows(30)))
    runner.load([history.get(first.id)])
    job, _ = history.record("cs", "t", "full", "http://x.example/b.csv", 3600)
    history.claim(job.id, runner.owner, 60)
    runner.stage_local(history.get(job.id), write(tmp_path / "b.csv", csv_rows(300_000)))
    runner.load([history.get(job.id)], progress=lambda _n: runner.stop.set())  # shutdown begins
    stopped = history.get(job.id)
    assert (stopped.status, stopped.error, stopped.attempts) == ("staged", None, 0)
    assert len(pg_rows(pg_schema, "t")) == 30  # the old table, untouched
    runner.stop.clear()
    drain(runner)
    assert history.get(job.id).status == "loaded" and len(pg_rows(pg_schema, "t")) == 300_000
    runner.warehouse.close()


def test_full_incremental_full_into_duckdb_over_http(
    data_dir: Path, export_server: FileServer
) -> None:
    import duckdb

    settings = source("unused", warehouse={"type": "duckdb", "path": "w.duckdb"})
    runner = LoadRunner("cs", settings, data_dir)
    history = runner.history
    full1, inc1 = csv_rows(300), csv_rows(100, 300)
    history.record(
        "cs", "people", "full", export_server.add("/f1.csv.bz2", COMPRESS["csv.bz2"](full1)), 3600
    )
    history.record(
        "cs",
        "people",
        "incremental",
        export_server.add("/i1.csv.gz", COMPRESS["csv.gz"](inc1)),
        3600,
    )
    drain(runner)

    def table() -> list[tuple[Any, ...]]:
        with duckdb.connect(str(data_dir / "w.duckdb"), read_only=True) as conn:
            return conn.execute("SELECT * FROM people ORDER BY id").fetchall()

    assert table() == expected(full1 + inc1.split(b"\n", 1)[1])
    full2 = csv_rows(50, tag="again")
    history.record("cs", "people", "full", export_server.add("/f2.csv", full2), 3600)
    drain(runner)
    assert table() == expected(full2)
    assert [j.status for j in history.find(source="cs")] == ["loaded"] * 3
