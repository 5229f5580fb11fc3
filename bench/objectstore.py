"""Object-store delivery and enrichment throughput, each against its baseline in the same run.

1. Parquet rows/s. The same ``--rows`` click events (six strings, an int, a float, a timestamp)
   are written three ways, each timed by the wall clock and by the process CPU clock (best
   of ``--repeat``; the sinks' fsyncs show in wall time only):
   - baseline: pyarrow building a table from ready-made Python column lists and writing it as
     zstd Parquet (the floor: no per-event work at all);
   - writer: the shared Parquet writer from event dicts (declared types checked column by
     column, then zstd Parquet);
   - sink: the whole ``s3`` sink into a local-directory store, handed the events in delivery
     batches of ``--batch-events`` (10,000, the default ``batch.max_events``) as the runtime
     does: each batch typed into a chunk gathered in the state database with the position, then
     one upload that makes the object of all of them.
   The lake sink is timed too (same batches; it writes a file per batch), and (``dicts``) pyarrow
   when it is handed the event dicts and gathers the columns with a list comprehension first.
   Every side writes zstd Parquet with pyarrow's default options (dictionary encoding, row
   groups). Ratios are rows/s over the baseline's.
   Then the path from the bodies as the buffer stores them (requests of 100 events, JSON
   arrays): the lake's ``write_requests`` (Arrow parses the bodies; the stream's columns settled
   by an earlier batch) against its baseline: pyarrow.json reading each batch's events as NDJSON
   and writing zstd Parquet with the lake's columns (ids and receive times handed over ready),
   a file per batch, no fsync or catalog (JSON parsing is work the from-columns baseline never
   does, and the lake writes more columns than it).
2. Enrichment. A lookup service on loopback answers every GET after 20 ms; ``--records`` events
   reference 1,000 distinct ids (uniformly at random) and pass ``enrich_http`` in batches of
   ``--batch``. Wall clock; prints records/s and the cache hit ratio, then the same stream with
   the cache off (``cache_size: 0``) for comparison, on a tenth of the records.

    .venv/bin/python bench/objectstore.py
    .venv/bin/python bench/objectstore.py --rows 500000 --records 50000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec

from headrace.buffer.local.positions import POSITIONS_SCHEMA
from headrace.buffer.local.reader import PositionAck
from headrace.storage import state

FIELDS = {"requestid": "string", "contextid": "string", "callerid": "string",
          "component": "string", "action": "string", "type": "string", "n": "int64",
          "price": "float64", "at": "timestamp"}  # fmt: skip


def click_rows(n: int) -> list[dict[str, Any]]:
    base = 1_763_800_000_000
    return [
        {"requestid": f"r-{i}", "contextid": f"c-{i % 50}", "callerid": f"u-{i % 7}",
         "component": "button", "action": "click", "type": "ui", "n": i, "price": i * 0.25,
         "at": base + i}
        for i in range(n)
    ]  # fmt: skip


def checkpoint(sink: str, positions: dict[str, int]) -> state.Checkpoint:
    """A checkpoint saving ``positions`` as the sink's buffer positions, as delivery's would."""
    return state.Checkpoint(sink, PositionAck(sink, positions))


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    """The shortest wall time and the smallest CPU time of ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def _ndjson_lines(array_body: bytes) -> list[bytes]:
    """The events of a JSON array body, one compact line each (the baseline's input)."""
    return [msgspec.json.encode(e) for e in msgspec.json.decode(array_body)]


def parquet_bench(rows: int, repeat: int, batch_events: int = 10_000) -> None:
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest
    from headrace.ids import event_ids, new_base_id
    from headrace.sinks.lake.config import LakeConfig
    from headrace.sinks.lake.sink import LakeSink
    from headrace.sinks.parquet import parquet_bytes, table_from_records
    from headrace.sinks.s3.config import S3Config
    from headrace.sinks.s3.sink import S3_SCHEMA, S3Sink
    from headrace.types import Event

    records = click_rows(rows)
    columns = {name: [r[name] for r in records] for name in FIELDS}
    columns["at"] = [v * 1000 for v in columns["at"]]  # µs, ready for the timestamp type
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
             "timestamp": pa.timestamp("us", tz="UTC")}  # fmt: skip

    out = Path(tempfile.mkdtemp()) / "baseline.parquet"

    def baseline() -> None:
        table = pa.table({k: pa.array(v, types[FIELDS[k]]) for k, v in columns.items()})
        pq.write_table(table, out, compression="zstd")

    def from_dicts() -> None:  # for context: pyarrow when it has to gather the columns itself
        cols = {k: [r.get(k) for r in records] for k in FIELDS}
        cols["at"] = [v * 1000 for v in cols["at"]]
        table = pa.table({k: pa.array(v, types[FIELDS[k]]) for k, v in cols.items()})
        pq.write_table(table, out, compression="zstd")

    def writer() -> None:  # the shared writer from event dicts, as the sink types them
        built = table_from_records(records, FIELDS, time_format="epoch_ms")
        assert not built.failed
        out.with_suffix(".writer").write_bytes(parquet_bytes(built.table, "zstd"))

    events = [Event(f"e{i}", "clicks", "web", 1_763_800_000_000_000 + i, r)
              for i, r in enumerate(records)]  # fmt: skip
    batches = [events[at : at + batch_events] for at in range(0, rows, batch_events)]

    def s3_sink() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            config = S3Config.model_validate({
                "type": "s3", "inputs": ["web"], "path": str(data_dir / "store"),
                "schema": {"fields": FIELDS, "timestamp_format": "epoch_ms"},
                "buffer_size": "1GiB", "buffer_interval": 3600,
            })  # fmt: skip
            conn = state.connect(data_dir / "state.db")
            state.init_schema(conn, [S3_SCHEMA, POSITIONS_SCHEMA])
            sink = S3Sink("s3", config, data_dir)
            sink.open()
            for n, batch in enumerate(batches):
                sink.write(batch, checkpoint("s3", {"seg": n}))
            assert sink.flush(conn, force=True) == 1
            sink.close()
            conn.close()

    @contextlib.contextmanager
    def fresh_lake() -> Iterator[LakeSink]:
        from headrace.storage.lake_catalog import LAKE_SCHEMA

        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            conn = state.connect(data_dir / "state.db")
            state.init_schema(conn, [LAKE_SCHEMA, POSITIONS_SCHEMA])
            sink = LakeSink("lake", LakeConfig(type="lake", inputs=["web"]), data_dir)
            sink.open()
            yield sink
            sink.close()
            conn.close()

    def lake_sink() -> None:
        with fresh_lake() as sink:
            for n, batch in enumerate(batches):
                sink.write(batch, checkpoint("lake", {"seg": n}))

    # the same rows as the buffer stores them: requests of 100 events, JSON array bodies
    stored = [
        BufferedRequest(1_763_800_000_000_000 + at, new_base_id().to_bytes(16, "big"), "clicks",
                        "web", len(chunk), FORMAT_ARRAY, msgspec.json.encode(chunk))
        for at in range(0, rows, 100)
        for chunk in [records[at : at + 100]]
    ]  # fmt: skip
    stored_batches = [
        stored[at : at + batch_events // 100] for at in range(0, len(stored), batch_events // 100)
    ]

    # the baseline's input, made before it is timed: each batch's events as NDJSON, and the
    # columns the lake adds (ids, receive times) ready as Arrow arrays
    stamp = pa.timestamp("us", tz="UTC")
    json_batches = [
        (
            b"".join(e + b"\n" for r in batch for e in _ndjson_lines(r.body)),
            pa.array([i for r in batch for i in event_ids(int.from_bytes(r.base_id, "big"),
                                                          r.count)]),
            pa.array([r.received_at_us for r in batch for _ in range(r.count)], stamp),
        )
        for batch in stored_batches
    ]  # fmt: skip

    def json_baseline() -> None:  # pyarrow.json, then Parquet: a file per batch, lake columns
        for n, (ndjson, ids, received) in enumerate(json_batches):
            options = pj.ReadOptions(use_threads=False, block_size=len(ndjson) + 1)
            table = pj.read_json(io.BytesIO(ndjson), read_options=options)
            table = table.add_column(0, "_id", ids).add_column(1, "_received_at", received)
            table = table.add_column(2, "_time", received)
            table = table.append_column("_extra", pa.nulls(len(ids), pa.string()))
            pq.write_table(table, out.with_suffix(f".{n}"), compression="zstd")

    def lake_stored() -> None:  # the lake from stored requests, columns settled before
        with fresh_lake() as sink:
            sink.write(events[:1], checkpoint("lake", {"seg": -1}))  # the stream's first batch
            for n, batch in enumerate(stored_batches):
                assert sink.write_requests(batch, checkpoint("lake", {"seg": n})) is not None

    print(f"Parquet, {rows:,} rows of {len(FIELDS)} columns, zstd, best of {repeat}; rows/s of "
          f"wall time (and of CPU time: the sinks also wait for fsync); sinks get batches of "
          f"{batch_events:,}")  # fmt: skip
    base, base_cpu = best_of(repeat, baseline)
    print(f"  baseline  pyarrow from columns        {rows / base:>12,.0f} rows/s   "
          f"(CPU {rows / base_cpu:,.0f})")  # fmt: skip
    runs = (
        ("dicts", from_dicts),
        ("writer", writer),
        ("s3 sink", s3_sink),
        ("lake sink", lake_sink),
    )
    for name, run in runs:
        took, took_cpu = best_of(repeat, run)
        label = {"dicts": "pyarrow from event dicts", "writer": "shared Parquet writer",
                 "s3 sink": "s3 sink, local directory",
                 "lake sink": "lake sink"}[name]  # fmt: skip
        print(f"  {name:<9} {label:<29} {rows / took:>12,.0f} rows/s   {base / took:.2f}x baseline "
              f"(CPU {rows / took_cpu:,.0f}: {base_cpu / took_cpu:.2f}x)")  # fmt: skip
    print("From the bodies as the buffer stores them (requests of 100 events, JSON arrays):")
    json_base, json_cpu = best_of(repeat, json_baseline)
    print(f"  baseline  pyarrow.json, same files    {rows / json_base:>12,.0f} rows/s   "
          f"{base / json_base:.2f}x the baseline from columns (CPU {rows / json_cpu:,.0f})")  # fmt: skip
    took, took_cpu = best_of(repeat, lake_stored)
    print(f"  lake      lake sink, stored requests  {rows / took:>12,.0f} rows/s   "
          f"{json_base / took:.2f}x pyarrow.json, {base / took:.2f}x from columns "
          f"(CPU {rows / took_cpu:,.0f}: {json_cpu / took_cpu:.2f}x, {base_cpu / took_cpu:.2f}x)")  # fmt: skip


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        time.sleep(0.020)
        ident = self.path.rsplit("/", 1)[-1]
        body = json.dumps({"species": f"s-{ident}", "goodevil": "Good"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def enrich_run(
    url: str, records: int, batch: int, cache_size: int, concurrency: int
) -> tuple[float, float]:
    from headrace.transforms import TransformContext
    from headrace.transforms.enrich.config import EnrichConfig
    from headrace.transforms.enrich.lookup import EnrichHttp
    from headrace.types import Event

    rng = random.Random(5)
    config = EnrichConfig.model_validate({
        "type": "enrich_http", "inputs": ["web"], "url": f"{url}/mysfits/{{mysfitId}}",
        "cache_size": cache_size, "concurrency": concurrency, "timeout": 5,
    })  # fmt: skip
    transform = EnrichHttp("enrich", config)
    transform.open(TransformContext("bench", Path("/nonexistent")))
    events = [Event(f"e{i}", "clicks", "web", i, {"mysfitId": f"m{rng.randrange(1000)}"})
              for i in range(records)]  # fmt: skip
    start = time.perf_counter()
    for at in range(0, records, batch):
        result = transform.apply(events[at : at + batch])
        assert not result.failed, result.failed[:1]
    took = time.perf_counter() - start
    transform.close()
    stats = transform.stats
    return records / took, stats.cache_hits / max(stats.lookups, 1)


def enrich_bench(records: int, batch: int, concurrency: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        print(f"\nEnrichment, 20 ms upstream, 1,000 distinct ids, batches of {batch}, "
              f"concurrency {concurrency} (wall clock)")  # fmt: skip
        rate, hits = enrich_run(url, records, batch, 10_000, concurrency)
        print(f"  cached    {records:>7,} records  {rate:>10,.0f} records/s   hit ratio {hits:.3f}")
        few = max(records // 10, batch)
        rate, hits = enrich_run(url, few, batch, 0, concurrency)
        print(f"  no cache  {few:>7,} records  {rate:>10,.0f} records/s   hit ratio {hits:.3f} "
              "(repeats within a batch only)")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-events", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    parquet_bench(args.rows, args.repeat, args.batch_events)
    enrich_bench(args.records, args.batch, args.concurrency)


if __name__ == "__main__":
    main()
