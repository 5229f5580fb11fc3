"""Delivery throughput: events/s from the buffer into the lake, stage by stage, in one process.

Method: a temporary buffer is filled with stored requests (``--requests`` of ``--batch`` click
events each, the shape ``bench/ingest.py`` sends). Then, in the same run, three passes over it:
reading and decoding the frames into events (the floor every sink pays), shaping them into the
lake's rows and columns without writing (``LakeSink`` with file writing skipped), and the whole
lake write (Parquet files, catalog commit). Each pass is timed with the process CPU clock; the
figure is events per CPU second, and each stage is shown as a share of the full write.

    .venv/bin/python bench/delivery.py                      # 400 requests of 100 events
    .venv/bin/python bench/delivery.py --profile            # and the top functions of a write
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import msgspec

from headrace.buffer.local.frames import encode_frame
from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.local.segments import SegmentWriter
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest, expand_events
from headrace.ids import new_base_id
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.lake.sink import LakeSink
from headrace.storage import state
from headrace.types import Event


def fill(buffer_dir: Path, requests: int, batch: int) -> None:
    writer = SegmentWriter(buffer_dir, "bench", segment_bytes=1 << 40, segment_age=1e9)
    writer.open()
    frames = []
    for r in range(requests):
        events = [
            {"requestid": f"r-{r}-{i}", "contextid": f"c-{i % 50}", "callerid": f"u-{i % 7}",
             "component": "button", "action": "click", "type": "ui", "n": i}
            for i in range(batch)
        ]  # fmt: skip
        body = msgspec.json.encode(events)
        frames.append(
            encode_frame(
                BufferedRequest(
                    time.time_ns() // 1000,
                    new_base_id().to_bytes(16, "big"),
                    "clicks",
                    "events",
                    batch,
                    FORMAT_ARRAY,
                    body,
                )
            )
        )
    writer.append(frames)
    writer.close()


def read_events(buffer_dir: Path) -> list[Event]:
    items = SegmentReader(buffer_dir, "bench", {}, set()).poll(1 << 40).items
    return [event for item in items for event in expand_events(item.request)]


def timed(label: str, work: object, events: int, results: dict[str, float]) -> None:
    start = time.process_time()
    work()  # type: ignore[operator]
    spent = time.process_time() - start
    results[label] = spent
    print(f"{label:<28} {events / spent:>12,.0f} events/s  ({spent * 1e6 / events:6.2f} µs/event)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="stored requests")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--profile", action="store_true", help="print the top functions of a write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        fill(data_dir / "buffer", args.requests, args.batch)
        total = args.requests * args.batch
        results: dict[str, float] = {}
        events: list[Event] = []

        def decode() -> None:
            events.extend(read_events(data_dir / "buffer"))

        timed("read + decode (baseline)", decode, total, results)
        config = LakeConfig(type="lake", inputs=["events"], batch={"max_events": 10_000})
        chunk = config.batch.max_events

        def write() -> None:
            sink = LakeSink("lake", config, data_dir)
            sink.open()
            assert sink._conn is not None
            state.init_schema(sink._conn)
            for start in range(0, len(events), chunk):
                sink.write(events[start : start + chunk], state.Checkpoint("lake"))
            sink.close()

        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
        timed("lake write (shape + parquet)", write, total, results)
        if args.profile:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        share = results["read + decode (baseline)"] / (
            results["read + decode (baseline)"] + results["lake write (shape + parquet)"]
        )
        print(f"\nreading and decoding are {share:.0%} of delivering into the lake; "
              f"end to end {total / sum(results.values()):,.0f} events per CPU second")  # fmt: skip


if __name__ == "__main__":
    main()
