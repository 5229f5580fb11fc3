"""What a Firehose function returns, as Firehose takes it: bytes that are not JSON reach the sinks
that write lines as they are, the others refuse them naming the function, and the records it
fails go (when the s3 sink says so) to ``processing-failed/`` in Firehose's format. ``headrace
serve`` in a subprocess, PostgreSQL on 127.0.0.1, the functions from tests/firehose_functions."""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.exportserver import DSN, throwaway_schema
from support.serverproc import ServerProcess

LOGS = [
    '10.0.0.7 - - [22/Nov/2026:10:00:01 +0000] "GET /pricing HTTP/1.1" 200 5120',
    '10.0.0.8 - - [22/Nov/2026:10:00:02 +0000] "POST /signup HTTP/1.1" 302 -',
    "this is not an access log line",
]
PIPELINE = """
sources:
  access: {type: http}
transforms:
  to_csv:
    type: python
    inputs: [access]
    function: "firehose_functions:apache_log_to_csv"
    region: eu-west-1
    lambda_arn: arn:aws:lambda:eu-west-1:123456789012:function:apache-to-csv
sinks:
  lines:
    type: s3
    inputs: [to_csv]
    path: "%(store)s"
    format: ndjson
    buffer_interval: 1s
    processing_failed: error_prefix
  lake: {type: lake, inputs: [to_csv]}
  pg: {type: postgres, inputs: [to_csv], dsn: "%(dsn)s", schema: "%(schema)s", table: access}
"""


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture
def schema() -> Iterator[str]:
    yield from throwaway_schema("hr firehose ")


def test_csv_lines_and_processing_failures_as_firehose_writes_them(
    tmp_path: Path, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent.parent))  # firehose_functions
    store = tmp_path / "store"
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE % {"store": store, "dsn": DSN, "schema": schema})
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, config=config).start()
    try:
        body = [{"line": line} for line in LOGS]
        assert httpx.post(f"{server.url}/v1/streams/access/events", json=body).status_code == 202

        def objects(kind: str) -> list[bytes]:
            lines = []
            for path in sorted(store.rglob("*.json.gz")):
                failed = path.relative_to(store).parts[0] == "processing-failed"
                if failed == (kind == "error"):
                    lines += gzip.decompress(path.read_bytes()).splitlines()
            return lines

        data = eventually(lambda: len(objects("data")) == 2 and objects("data"))
        assert sorted(data or []) == [
            b"10.0.0.7,22/Nov/2026:10:00:01 +0000,GET,/pricing,200,5120",
            b"10.0.0.8,22/Nov/2026:10:00:02 +0000,POST,/signup,302,-",
        ], server.log()
        (error,) = eventually(lambda: objects("error"))
        record = json.loads(error)
        assert record["errorCode"] == "Lambda.ProcessingFailed"
        assert record["lambdaArn"] == "arn:aws:lambda:eu-west-1:123456789012:function:apache-to-csv"
        assert json.loads(base64.b64decode(record["rawData"])) == {"line": LOGS[2]}
        assert record["attemptsMade"] == 1 and record["arrivalTimestamp"] > 0

        # the lake keeps the lines in its _raw column
        def lake() -> list[str]:
            page = httpx.get(f"{server.url}/v1/streams/access/events", timeout=10)
            return sorted(e["data"]["_raw"] for e in page.json().get("events", []))

        assert eventually(lambda: len(lake()) == 2) and lake()[0].startswith("10.0.0.7,")

        # PostgreSQL needs columns: every record goes to its dead letters, with the reason
        def letters() -> list[tuple[str, str, str]]:
            with sqlite3.connect(data_dir / "state.db") as conn:
                return conn.execute(
                    "SELECT sink, reason, error FROM dead_letters ORDER BY sink, reason"
                ).fetchall()

        found = eventually(lambda: len(letters()) == 4 and letters())
        assert found, letters()
        assert [(sink, reason) for sink, reason, _ in found] == [
            ("lake", "transform_failed"),
            ("pg", "transform_bad_output"),
            ("pg", "transform_bad_output"),
            ("pg", "transform_failed"),
        ]
        refusal = found[1][2]
        assert "to_csv: returned data that is not a JSON object" in refusal
        assert "sink pg needs JSON objects" in refusal
    finally:
        assert server.stop() == 0
