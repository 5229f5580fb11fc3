"""``headrace replay`` and a client's resend add nothing to any sink: the lake, PostgreSQL, S3
(Parquet and NDJSON) and DynamoDB, all real (PostgreSQL on 127.0.0.1, S3 and DynamoDB from a moto
server process), with ``headrace serve`` in a subprocess."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from support.exportserver import DSN, throwaway_schema
from support.serverproc import ServerProcess

PIPELINE = """\
sources:
  gen: {type: http}                        # ids made by headrace
  keyed: {type: http, id_field: requestid} # ids sent by the client
sinks:
  lake: {type: lake, inputs: [gen, keyed]}
  pg:
    type: postgres
    inputs: [gen, keyed]
    dsn: "%(dsn)s"
    schema: "%(schema)s"
    table: clicks
    columns: {requestid: text, n: bigint}
  parquet:
    type: s3
    inputs: [gen, keyed]
    bucket: %(bucket)s
    endpoint_url: %(moto)s
    region: us-east-1
    buffer_interval: 1s
    schema: {fields: {requestid: string, n: int64}}
  ndjson:
    type: s3
    inputs: [gen, keyed]
    path: %(store)s
    format: ndjson
    buffer_interval: 1s
  items:
    type: dynamodb
    inputs: [gen, keyed]
    table: %(table)s
    partition_key: {name: requestid}
    create_table: true
    endpoint_url: %(moto)s
    region: us-east-1
"""
SINKS = ("lake", "pg", "parquet", "ndjson", "items")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "headrace.cli", *args], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture
def schema() -> Iterator[str]:
    yield from throwaway_schema("hr replay ")


class Stores:
    """What each sink holds: the requestids, repeats included."""

    def __init__(self, server: ServerProcess, moto: str, bucket: str, store: Path, schema: str,
                 table: str) -> None:  # fmt: skip
        self.server, self.bucket, self.store, self.schema, self.table = (
            server, bucket, store, schema, table
        )  # fmt: skip
        self.s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
        self.dynamodb = boto3.resource("dynamodb", endpoint_url=moto, region_name="us-east-1")

    def lake(self) -> list[str]:
        found = []
        for stream in ("gen", "keyed"):
            url = f"{self.server.url}/v1/streams/{stream}/events"
            page = httpx.get(url, params={"limit": "1000"}, timeout=10)
            if page.status_code == 200:
                found += [e["data"]["requestid"] for e in page.json()["events"]]
        return sorted(found)

    def pg(self) -> list[str]:
        with psycopg.connect(DSN) as conn:
            query = psycopg.sql.SQL("SELECT requestid FROM {}").format(
                psycopg.sql.Identifier(self.schema, "clicks")
            )
            try:
                return sorted(row[0] for row in conn.execute(query))
            except psycopg.errors.UndefinedTable:
                return []

    def parquet(self) -> list[str]:
        found: list[str] = []
        for item in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            found += pq.read_table(io.BytesIO(body)).column("requestid").to_pylist()
        return sorted(found)

    def ndjson(self) -> list[str]:
        found = []
        for path in self.store.rglob("*.json.gz"):
            lines = gzip.decompress(path.read_bytes()).splitlines()
            found += [json.loads(line)["requestid"] for line in lines]
        return sorted(found)

    def items(self) -> list[str]:
        try:
            scanned = self.dynamodb.Table(self.table).scan()["Items"]
        except self.dynamodb.meta.client.exceptions.ResourceNotFoundException:
            return []
        return sorted(str(item["requestid"]) for item in scanned)

    def all(self) -> dict[str, list[str]]:
        return {name: getattr(self, name)() for name in SINKS}


def test_replay_and_resend_add_nothing_to_any_sink(
    tmp_path: Path, moto_url: str, schema: str
) -> None:
    bucket, table = f"replay-{uuid.uuid4().hex[:8]}", f"replay-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    store = tmp_path / "store"
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE % {"dsn": DSN, "schema": schema, "bucket": bucket,
                                  "moto": moto_url, "store": store, "table": table})  # fmt: skip
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, config=config).start()
    stores = Stores(server, moto_url, bucket, store, schema, table)
    try:
        started = time.time()
        gen = [{"requestid": f"g{i}", "n": i} for i in range(30)]
        keyed = [{"requestid": f"k{i}", "n": i} for i in range(30)]
        for stream, events in (("gen", gen), ("keyed", keyed)):
            url = f"{server.url}/v1/streams/{stream}/events"
            assert httpx.post(url, json=events[:20]).status_code == 202
            for one in events[20:]:
                assert httpx.post(url, json=one).status_code == 202
        want = sorted(e["requestid"] for e in gen + keyed)
        assert eventually(lambda: stores.all() == dict.fromkeys(SINKS, want)), stores.all()

        # the client resends some of its events (a retry after a lost answer)
        url = f"{server.url}/v1/streams/keyed/events"
        assert httpx.post(url, json=keyed[:10]).status_code == 202
        assert httpx.post(url, json=keyed[25]).status_code == 202

        def delivered(count: int) -> bool:
            metrics = server.metrics()
            return all(
                sum(v for k, v in metrics.items()
                    if k.startswith("headrace_events_delivered_total") and f'sink="{sink}"' in k)
                >= count
                for sink in SINKS
            )  # fmt: skip

        assert eventually(lambda: delivered(71)), server.metrics()
        # and the operator replays both streams over everything received
        since, until = str(int(started) - 60), str(int(time.time()) + 60)
        for stream in ("gen", "keyed"):
            cli("replay", "--config", str(config), "--data-dir", str(data_dir), "--stream",
                stream, "--since", since, "--until", until)  # fmt: skip
        assert eventually(lambda: delivered(71 + 71)), server.metrics()
        time.sleep(2.5)  # past the s3 sinks' buffer_interval: anything gathered is uploaded
        assert eventually(lambda: all(len(v) >= len(want) for v in stores.all().values()))
        assert stores.all() == dict.fromkeys(SINKS, want)
    finally:
        assert server.stop() == 0
