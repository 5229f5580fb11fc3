"""The s3 sink against a real moto server process (and a local directory as the store)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pyarrow.parquet as pq
import pytest

from headrace.buffer.local.positions import load_positions
from headrace.sinks.s3.config import S3Config
from headrace.sinks.s3.objectstore import DirectoryStore
from headrace.sinks.s3.sink import S3_SCHEMA, S3Sink
from headrace.storage import state
from headrace.types import Event
from support.buffer import checkpoint as acked

T0 = 1_763_800_000_000_000  # 2025-11-22T08:26:40Z


def s3(moto_url: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")


@pytest.fixture
def bucket(moto_url: str) -> str:
    name = f"hr-{uuid.uuid4().hex[:12]}"
    s3(moto_url).create_bucket(Bucket=name)
    return name


def config(**kw: Any) -> S3Config:
    base: dict[str, Any] = {"type": "s3", "inputs": ["web"], "buffer_interval": 3600}
    return S3Config.model_validate({**base, **kw})


def events(n: int, stream: str = "clicks", **extra: Any) -> list[Event]:
    return [
        Event(f"e{i}", stream, "web", T0 + i, {"requestid": f"r{i}", "n": i, **extra})
        for i in range(n)
    ]


def checkpoint(sink: str = "s3") -> state.Checkpoint:
    return acked(sink, {"seg": 10})


def opened(cfg: S3Config, data_dir: Path) -> S3Sink:
    sink = S3Sink("s3", cfg, data_dir)
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn, [S3_SCHEMA])
    conn.close()
    sink.open()
    return sink


def objects(moto_url: str, bucket: str) -> dict[str, bytes]:
    client = s3(moto_url)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_parquet_objects_under_firehose_keys_with_bad_records_in_the_error_prefix(
    moto_url: str, bucket: str, data_dir: Path
) -> None:
    cfg = config(bucket=bucket, endpoint_url=moto_url, compression="snappy",
                 schema={"fields": {"requestid": "string", "n": "int64"}, "required": ["requestid"]})  # fmt: skip
    sink = opened(cfg, data_dir)
    batch = events(50)
    batch[7].data["n"] = "seven"  # does not fit int64
    del batch[9].data["requestid"]
    sink.write(batch, checkpoint())
    conn = state.connect(data_dir / "state.db")
    assert load_positions(conn, "s3")[0] == {"seg": 10}  # committed with the events
    assert objects(moto_url, bucket) == {}  # buffering: nothing is due yet
    sink.close()  # a clean stop uploads what is gathered
    found = objects(moto_url, bucket)
    (data_key,) = [k for k in found if k.endswith(".parquet")]
    # the prefix is the arrival hour; the name carries the time the object was started
    assert data_key.startswith("2025/11/22/08/clicks-20")
    table = pq.read_table(io.BytesIO(found[data_key]))
    assert table.num_rows == 48
    assert (
        pq.ParquetFile(io.BytesIO(found[data_key])).metadata.row_group(0).column(0).compression
        == "SNAPPY"
    )
    rows = {r["requestid"]: r["n"] for r in table.to_pylist()}
    assert rows["r3"] == 3 and "r7" not in rows
    (error_key,) = [k for k in found if k.startswith("format-conversion-failed/")]
    errors = [json.loads(line) for line in gzip.decompress(found[error_key]).splitlines()]
    assert sorted(e["eventId"] for e in errors) == ["e7", "e9"]
    assert all(e["errorCode"] == "DataFormatConversion.MalformedData" for e in errors)
    by_id = {e["eventId"]: e for e in errors}
    assert json.loads(base64.b64decode(by_id["e7"]["rawData"]))["n"] == "seven"
    assert "required" in by_id["e9"]["errorMessage"]


def test_gzip_ndjson_dynamic_partitions_and_event_time(
    moto_url: str, bucket: str, data_dir: Path
) -> None:
    cfg = config(bucket=bucket, endpoint_url=moto_url, format="ndjson", buffer_size=1,
                 prefix="firehose/site=!{partitionKeyFromQuery:site}/!{timestamp:yyyy-MM-dd}/",
                 time_source="event", time_field="ts")  # fmt: skip
    sink = opened(cfg, data_dir)
    batch = events(6, ts="2024-01-02T03:04:05Z")
    for i, event in enumerate(batch):
        event.data["site"] = "a/b" if i % 2 else "main"
    batch[5].data.pop("site")
    sink.write(batch, checkpoint())  # buffer_size 1 byte: uploaded at once
    found = objects(moto_url, bucket)
    keys = sorted(found)
    assert [k.rsplit("/", 1)[0] for k in keys if k.startswith("firehose/")] == [
        "firehose/site=a%2Fb/2024-01-02",
        "firehose/site=main/2024-01-02",
    ]
    main = next(k for k in keys if "site=main" in k)
    lines = [json.loads(x) for x in gzip.decompress(found[main]).splitlines()]
    assert [x["requestid"] for x in lines] == ["r0", "r2", "r4"]
    (failed,) = [k for k in keys if k.startswith("partitioning-failed/")]
    (record,) = [json.loads(x) for x in gzip.decompress(found[failed]).splitlines()]
    assert record["eventId"] == "e5" and "site" in record["errorMessage"]
    sink.close()


def test_gathered_events_survive_a_crash_and_go_up_under_the_same_key(
    moto_url: str, bucket: str, data_dir: Path
) -> None:
    cfg = config(bucket=bucket, endpoint_url=moto_url, format="ndjson")
    first = opened(cfg, data_dir)
    first.write(events(5), checkpoint())
    conn = state.connect(data_dir / "state.db")
    (key,) = [r[0] for r in conn.execute("SELECT object_key FROM s3_objects")]
    # the process dies here: no close(), nothing uploaded
    second = opened(cfg, data_dir)
    assert second.flush(conn, force=True) == 1
    assert list(objects(moto_url, bucket)) == [key]
    assert conn.execute("SELECT count(*) FROM s3_chunks").fetchone()[0] == 0


def test_large_objects_go_up_in_parts(moto_url: str, bucket: str, data_dir: Path) -> None:
    cfg = config(bucket=bucket, endpoint_url=moto_url, format="ndjson",
                 multipart_threshold="5MiB", part_size="5MiB")  # fmt: skip
    sink = opened(cfg, data_dir)
    blobs = [base64.b64encode(os.urandom(3000)).decode() for _ in range(2500)]
    sink.write(
        [Event(f"b{i}", "big", "web", T0, {"blob": b}) for i, b in enumerate(blobs)], checkpoint()
    )
    sink.flush(sink._conn, force=True)  # type: ignore[arg-type]
    assert sink.store.multipart_uploads == 1  # type: ignore[union-attr]
    (body,) = objects(moto_url, bucket).values()
    assert len(body) > 5 * 1024**2
    assert len(gzip.decompress(body).splitlines()) == 2500


class _Throttler(BaseHTTPRequestHandler):
    """Answers the first PUTs with 503 SlowDown, then passes requests on to moto."""

    upstream = ""
    throttle = 0
    seen: list[str] = []

    def _forward(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append(self.command)
        if self.command == "PUT" and type(self).throttle > 0:
            type(self).throttle -= 1
            payload = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        answer = httpx.request(
            self.command, self.upstream + self.path, headers=headers, content=body
        )
        self.send_response(answer.status_code)
        for k, v in answer.headers.items():
            if k.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "content-encoding",
            ):
                self.send_header(k, v)
        self.send_header("content-length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def throttling_proxy(moto_url: str) -> Iterator[type[_Throttler]]:
    handler = type("Throttler", (_Throttler,), {"upstream": moto_url, "throttle": 0, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def test_throttling_is_retried(
    moto_url: str, bucket: str, data_dir: Path, throttling_proxy: type[_Throttler]
) -> None:
    cfg = config(bucket=bucket, endpoint_url=throttling_proxy.url, format="ndjson", buffer_size=1)  # type: ignore[attr-defined]
    sink = opened(cfg, data_dir)
    throttling_proxy.throttle = 2
    sink.write(events(3), checkpoint())
    assert throttling_proxy.seen.count("PUT") == 3  # two SlowDown answers, then the upload
    assert len(objects(moto_url, bucket)) == 1
    assert sink.health() is None


def test_a_local_directory_is_just_another_object_store(data_dir: Path, tmp_path: Path) -> None:
    cfg = config(path=str(tmp_path / "store"), schema={"fields": {"requestid": "string", "n": "int64"}},
                 prefix="p/!{timestamp:yyyy}/")  # fmt: skip
    sink = opened(cfg, data_dir)
    sink.write(events(4), checkpoint())
    sink.close()
    (file,) = (tmp_path / "store" / "p" / "2025").iterdir()
    assert pq.read_table(file).column("n").to_pylist() == [0, 1, 2, 3]


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        config()
    with pytest.raises(ValueError, match=r"schema\.fields"):
        config(bucket="b")
    with pytest.raises(ValueError, match="unknown expression"):
        config(bucket="b", format="ndjson", prefix="!{bogus:x}/")


def test_a_store_that_is_down_keeps_events_in_the_spool_until_it_is_back(
    moto_url: str, bucket: str, data_dir: Path, throttling_proxy: type[_Throttler]
) -> None:
    cfg = config(bucket=bucket, endpoint_url=throttling_proxy.url, format="ndjson",  # type: ignore[attr-defined]
                 buffer_size=1, max_attempts=2)  # fmt: skip
    sink = opened(cfg, data_dir)
    throttling_proxy.throttle = 1000
    sink.write(events(3), checkpoint())  # taken: the batch is durable in the spool
    assert "SlowDown" in (sink.health() or "")
    conn = state.connect(data_dir / "state.db")
    assert load_positions(conn, "s3")[0] == {"seg": 10}
    sink.close()  # does not wait out retries against a failing store
    assert objects(moto_url, bucket) == {}
    throttling_proxy.throttle = 0
    again = opened(cfg, data_dir)
    again.maintain()
    assert again.health() is None
    (body,) = objects(moto_url, bucket).values()
    assert len(gzip.decompress(body).splitlines()) == 3


def test_a_partition_that_cannot_be_uploaded_holds_back_nothing_and_is_not_gathered_twice(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is committed before the upload: a failing upload (here: one partition whose
    chunks cannot be combined) must neither fail the write (the runtime would hand the same
    events over again) nor stop the partitions after it."""
    store = tmp_path / "store"
    cfg = config(path=str(store), format="ndjson", prefix="p/!{partitionKeyFromQuery:k}/",
                 buffer_size=1)  # fmt: skip
    sink = opened(cfg, data_dir)
    real_upload = sink._upload

    def upload(conn: Any, pkey: str, kind: str, object_key: str) -> None:
        if "/bad/" in object_key:
            raise ValueError("chunks that do not combine")
        real_upload(conn, pkey, kind, object_key)

    monkeypatch.setattr(sink, "_upload", upload)
    bad = [Event("b1", "clicks", "web", T0, {"k": "bad"})]
    good = [Event("g1", "clicks", "web", T0 + 1, {"k": "good"})]
    assert sink.write(bad + good, checkpoint()).failed == []  # no exception
    uploaded = sorted(str(p.relative_to(store)) for p in store.rglob("*.gz"))
    assert len(uploaded) == 1 and uploaded[0].startswith("p/good/")
    assert sink.health() is not None and "chunks that do not combine" in (sink.health() or "")
    conn = state.connect(data_dir / "state.db")
    spooled = conn.execute("SELECT count(*) FROM s3_chunks").fetchone()[0]
    conn.close()
    assert spooled == 1  # the bad partition's one chunk, gathered once
    sink.close()


@pytest.mark.parametrize("prefix", ["/clicks/", "a//b/", "../x/", "x/./y/"])
def test_a_prefix_no_store_accepts_is_refused_by_validate(prefix: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must not start with"):
        config(path="/tmp/store", format="ndjson", prefix=prefix)


@pytest.mark.parametrize(
    "expression", ["!{partitionKeyFromQuery:site}", "!{partitionKeyFromLambda:site}"]
)
def test_an_error_prefix_cannot_use_record_fields(expression: str) -> None:
    """Failed records are filed without looking into them: a field there would fail the first
    record without it again, out of write(), and its batch would be retried for ever."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"error_prefix .* cannot use partitionKeyFromQuery"):
        config(path="/tmp/store", format="ndjson", error_prefix=f"errors/{expression}/")
    config(path="/tmp/store", format="ndjson",
           error_prefix="errors/!{firehose:error-output-type}/!{timestamp:yyyy}/!{firehose:random-string}/")  # fmt: skip


class _GatheringStore(DirectoryStore):
    """A directory whose first upload is overlapped by another batch gathered into the same
    partition (in production: ``write`` on the pipeline thread while ``maintain`` uploads)."""

    def __init__(self, root: Path, gather: Any) -> None:
        super().__init__(root)
        self.gather = gather

    def put(self, key: str, data: bytes, content_type: str) -> None:
        super().put(key, data, content_type)
        gather, self.gather = self.gather, None
        if gather is not None:
            gather()


def test_events_gathered_during_an_upload_still_count_towards_buffer_size(
    data_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    cfg = config(path=str(store), format="ndjson", buffer_size=1000)
    sink = opened(cfg, data_dir)
    other = opened(cfg, data_dir)  # a second writer of the same sink's spool
    sink.write(events(10), checkpoint())  # 249 bytes: under buffer_size
    during = events(20)  # 519 bytes
    sink.store = _GatheringStore(store, lambda: other.write(during, checkpoint()))
    assert sink.flush(sink._conn, force=True) == 1  # type: ignore[arg-type]
    conn = state.connect(data_dir / "state.db")
    left = b"\n".join(json.dumps(e.data, separators=(",", ":")).encode() for e in during)
    assert conn.execute("SELECT bytes, rows FROM s3_objects").fetchone() == (len(left), 20)
    conn.close()
    sink.write(events(20), checkpoint())  # with the 519 left over: past buffer_size
    bodies = [gzip.decompress(p.read_bytes()).splitlines() for p in store.rglob("*.gz")]
    assert sorted(map(len, bodies)) == [10, 40]
    sink.close()
    other.close()
