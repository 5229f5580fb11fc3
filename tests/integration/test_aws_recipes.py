"""The click-logs and mysfits-clicks recipes end to end: ``headrace serve`` in a subprocess,
S3 and DynamoDB from a moto server process, the enrichment service a real flaky HTTP server."""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import pyarrow.parquet as pq
import pytest

from support.enrichservice import Behaviour, lookup_service
from support.serverproc import ServerProcess


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headrace.cli", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def bucket_objects(client: Any, bucket: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def recipe(tmp_path: Path, name: str) -> Path:
    config = tmp_path / "pipeline.yaml"
    made = cli("init", "--recipe", name, "-o", str(config))
    assert made.returncode == 0, made.stderr
    checked = cli("validate", str(config))
    assert checked.returncode == 0, checked.stderr + checked.stdout
    return config


def click(i: int) -> dict[str, str]:
    return {"requestid": f"req-{i}", "contextid": f"ctx-{i % 3}", "callerid": "web",
            "component": "checkout" if i % 2 else "cart", "action": "click", "type": "button"}  # fmt: skip


def test_click_logs(tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket, table = f"clicks-{uuid.uuid4().hex[:8]}", f"clicks-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket=bucket)
    for key, value in {"CLICKLOGGER_TOKEN": "ALLOW=ORDERAPP", "CLICK_LOGS_BUCKET": bucket,
                       "CLICK_LOGS_TABLE": table, "AWS_ENDPOINT_URL": moto_url,
                       "CLICK_LOGS_BUFFER_INTERVAL": "1s"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    config = recipe(tmp_path, "click-logs")
    assert "    id_field: requestid" in config.read_text()  # a client's resend is stored once
    server = ServerProcess(tmp_path / "data", config=config).start()
    try:
        url = f"{server.url}/clicklogger"
        auth = {"Authorization": "ALLOW=ORDERAPP"}
        sent = [click(i) for i in range(40)]
        assert httpx.post(url, json=sent[:25], headers=auth).status_code == 202
        for one in sent[25:]:
            assert httpx.post(url, json=one, headers=auth).status_code == 202
        for resent in (sent[3], sent[30]):  # the client did not see the answer and sends again
            answer = httpx.post(url, json=resent, headers=auth)
            assert answer.json()["ids"] == [resent["requestid"]]
        assert httpx.post(url, json=click(99), headers={"Authorization": "DENY"}).status_code == 401
        assert httpx.post(url, json={**click(98), "extra": 1}, headers=auth).status_code == 400
        assert httpx.post(url, json={"requestid": "x"}, headers=auth).status_code == 400

        def parquet_rows() -> list[dict[str, Any]]:
            found = bucket_objects(s3, bucket)
            rows = []
            for key, body in found.items():
                assert key.startswith("clicklogs/") and key.endswith(".parquet"), key
                rows += pq.read_table(io.BytesIO(body)).to_pylist()
            return rows

        delivered = 'headrace_events_delivered_total{sink="clicks_s3"}'
        assert eventually(lambda: server.metrics().get(delivered) == 42), server.metrics()
        rows = eventually(lambda: len(parquet_rows()) >= 40 and parquet_rows())
        assert rows, server.log()
        time.sleep(1.5)  # one more buffer interval: a resend would have been uploaded by now
        rows = parquet_rows()
        assert sorted(rows, key=lambda r: r["requestid"]) == sorted(
            sent, key=lambda r: r["requestid"]
        )
        (key, *_rest) = bucket_objects(s3, bucket)
        year, month, day, hour = key.split("/")[1:5]
        assert len(year) == 4 and len(month) == len(day) == len(hour) == 2
        assert key.split("/")[5].startswith("clicklogger-")

        resource = boto3.resource("dynamodb", endpoint_url=moto_url)
        items = eventually(
            lambda: (got := resource.Table(table).scan()["Items"]) and len(got) == 40 and got
        )
        assert items, server.log()
        by_id = {item["requestid"]: item for item in items}
        assert set(by_id) == {c["requestid"] for c in sent}
        assert all(by_id[c["requestid"]]["component"] == c["component"] for c in sent)
        assert all(abs(int(item["timestamp"]) / 1000 - time.time()) < 600 for item in items)
    finally:
        assert server.stop() == 0


def test_mysfits_clicks(tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"mysfits-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket=bucket)
    behaviour = Behaviour(fail_every=4, delay=0.02, slow_ids={"m-slow"}, slow_seconds=0.3,
                          missing_ids={"m-gone"})  # fmt: skip
    with lookup_service(behaviour) as (service, b):
        for key, value in {"MYSFITS_SERVICE": service, "MYSFITS_BUCKET": bucket,
                           "AWS_ENDPOINT_URL": moto_url, "MYSFITS_BUFFER_INTERVAL": "1s"}.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        data_dir = tmp_path / "data"
        server = ServerProcess(data_dir, config=recipe(tmp_path, "mysfits-clicks")).start()
        try:
            url = f"{server.url}/mysfits/clicks"
            sent = [{"userId": f"u{i}", "mysfitId": f"m{i % 6}"} for i in range(30)]
            sent += [
                {"userId": "u-slow", "mysfitId": "m-slow"},
                {"userId": "u-x", "mysfitId": "m-gone"},
            ]
            assert httpx.post(url, json=sent).status_code == 202
            refused = httpx.post(url, json={"userId": "u", "mysfitId": "m1", "admin": True})
            assert refused.status_code == 400, refused.text

            def records() -> list[dict[str, Any]]:
                out = []
                for key, body in bucket_objects(s3, bucket).items():
                    assert key.startswith("firehose/") and key.endswith(".json.gz"), key
                    out += [json.loads(line) for line in gzip.decompress(body).splitlines()]
                return out

            got = eventually(lambda: len(records()) == 31 and records())
            assert got, server.log()
            by_user = {r["userId"]: r for r in got}
            assert by_user["u7"] == {"userId": "u7", "mysfitId": "m1", "species": "species-m1",
                                     "goodevil": "Good", "lawchaos": "Neutral"}  # fmt: skip
            assert "species" in by_user["u-slow"]  # slow, but within the timeout
            assert "u-x" not in by_user
            assert b.requests["/mysfits/m1"] <= 3  # cached after its first success
            labels = '{sink="clicks_bucket",transform="mysfit_attributes"}'
            metrics = eventually(lambda: server.metrics().get(f"headrace_enrich_lookups_total{labels}") == 32
                                 and server.metrics())  # fmt: skip
            assert metrics, server.metrics()
            assert metrics[f"headrace_enrich_cache_hits_total{labels}"] >= 24  # 30 clicks, 6 ids
            assert metrics[f"headrace_enrich_failures_total{labels}"] == 1
        finally:
            assert server.stop() == 0
        conn = sqlite3.connect(data_dir / "state.db")
        dead = conn.execute("SELECT sink, reason, error, data FROM dead_letters").fetchall()
        assert [(s, r) for s, r, _e, _d in dead] == [("clicks_bucket", "enrich_failed")]
        assert "404" in dead[0][2] and json.loads(dead[0][3])["mysfitId"] == "m-gone"


def test_a_firehose_function_runs_inside_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(__file__).parent.parent)
    )  # where firehose_functions is
    store = tmp_path / "store"
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
sources:
  clicks: {{type: http}}
transforms:
  fn: {{type: python, inputs: [clicks], function: "firehose_functions:lambda_handler", timeout: 10s}}
sinks:
  out: {{type: s3, inputs: [fn], path: "{store}", format: ndjson, buffer_interval: 1s}}
""")
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, config=config).start()
    try:
        sent = [{"callerid": "abc", "n": 1}, {"action": "heartbeat"}, {"n": 3}]
        assert httpx.post(f"{server.url}/v1/streams/clicks/events", json=sent).status_code == 202

        def lines() -> list[dict[str, Any]]:
            return [
                json.loads(x)
                for f in store.rglob("*.json.gz")
                for x in gzip.decompress(f.read_bytes()).splitlines()
            ]

        got = eventually(lines)
        assert got == [{"n": 1, "caller": "ABC", "remaining_ms_positive": True}], server.log()
    finally:
        assert server.stop() == 0
    conn = sqlite3.connect(data_dir / "state.db")
    assert conn.execute("SELECT reason FROM dead_letters").fetchall() == [("transform_failed",)]
