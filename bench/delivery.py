"""Delivery throughput: events/s from the buffer into the lake, stage by stage, in one process.

Method: a temporary buffer is filled with stored requests (``--requests`` of ``--batch`` click
events each, the shape ``bench/ingest.py`` sends). Then, in the same run, passes over it, each
timed with the process CPU clock (events per CPU second):
- read + decode (the baseline): the frames read and decoded into events, the floor of the path
  by events;
- lake write (shape + parquet): ``LakeSink.write`` of those events in batches of 10,000 (rows
  shaped one by one, columns, Parquet files, catalog commit);
- read frames, and lake write (stored requests): ``LakeSink.write_requests`` of the stored
  requests as they are, on a lake whose columns the stream's first batch has settled: Arrow
  parses the bodies (``headrace.sinks.arrow_bodies``), then the same files and commit.
The two paths end to end (read + decode + write against read + write_requests) are compared.

With ``--profile``, a real ``DeliveryWorker`` (the delivery process's loop: poll, batch, write,
checkpoint, acknowledge) then delivers fresh copies of the same buffer into fresh lakes, in
turns without and with stage clocks (``bench/stageprofile.py``): the functions that make up each
stage are wrapped in this process, so nothing in headrace changes. The table gives CPU µs per
stored request and per event for read frames (``SegmentReader.poll``), decode
(``expand_events``), transform (the sink's transforms; none here), shape rows (``LakeSink.write``
less what follows), build columns (``table_from_rows``), write (``write_parquet_file``), commit
(the catalog and checkpoint transaction) and acknowledge, plus the rest of the delivery thread;
the rows add up to that thread's CPU. The clocked and unclocked turns' CPU give the clocks' cost.

    .venv/bin/python bench/delivery.py                      # 400 requests of 100 events
    .venv/bin/python bench/delivery.py --profile            # and CPU per delivery stage
    .venv/bin/python bench/delivery.py --functions          # and the top functions of a write
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

import headrace.runtime.delivery as delivery_module
import headrace.sinks.lake.sink as lake_module
from headrace.buffer.local import LocalBuffer
from headrace.buffer.local.frames import encode_frame
from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.local.segments import SegmentWriter
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest, expand_events
from headrace.config.base import RetrySettings
from headrace.config.buffers import LocalBuffer as LocalBufferSettings
from headrace.ids import new_base_id
from headrace.runtime.delivery import DeliveryWorker
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.lake.sink import LakeSink
from headrace.storage import state
from headrace.telemetry import stageclock
from headrace.telemetry.metrics import Registry, key
from headrace.types import Event
from stageprofile import Clocks, Profile, clock_cost_ns

CLOCKED = [
    (SegmentReader, "poll", "read frames"),
    (delivery_module, "expand_events", "decode"),
    (DeliveryWorker, "_transform", "transform"),
    (LakeSink, "write", "sink write"),
    (LakeSink, "write_requests", "sink write"),
    (LakeSink, "_drop_stored", "dedupe check"),
    (lake_module, "body_columns", "parse bodies"),
    (lake_module, "table_from_rows", "build columns"),
    (lake_module, "_with_system_columns", "build columns"),
    (lake_module, "write_parquet_file", "write"),
    (LakeSink, "_commit", "commit (lake)"),
    (DeliveryWorker, "_save", "commit (checkpoint)"),
    (DeliveryWorker, "_delivered", "acknowledge"),
]
"""What makes up each delivery stage: (owner, function, stage). ``sink write`` holds the four
after it; what it holds beyond them is shaping the rows."""


def click_request(r: int, batch: int) -> BufferedRequest:
    """Stored request ``r``: ``batch`` click events in a JSON array."""
    events = [
        {"requestid": f"r-{r}-{i}", "contextid": f"c-{i % 50}", "callerid": f"u-{i % 7}",
         "component": "button", "action": "click", "type": "ui", "n": i}
        for i in range(batch)
    ]  # fmt: skip
    body = msgspec.json.encode(events)
    base = new_base_id().to_bytes(16, "big")
    return BufferedRequest(
        time.time_ns() // 1000, base, "clicks", "events", batch, FORMAT_ARRAY, body
    )


def fill(buffer_dir: Path, requests: int, batch: int) -> None:
    writer = SegmentWriter(buffer_dir, "bench", segment_bytes=1 << 40, segment_age=1e9)
    writer.open()
    writer.append([encode_frame(click_request(r, batch)) for r in range(requests)])
    writer.close()


def read_requests(buffer_dir: Path) -> list[BufferedRequest]:
    items = SegmentReader(buffer_dir, "bench", {}, set()).poll(1 << 40).items
    return [item.request for item in items]


def read_events(buffer_dir: Path) -> list[Event]:
    return [event for request in read_requests(buffer_dir) for event in expand_events(request)]


def timed(label: str, work: object, events: int, results: dict[str, float]) -> None:
    start = time.process_time()
    work()  # type: ignore[operator]
    spent = time.process_time() - start
    results[label] = spent
    print(f"{label:<28} {events / spent:>12,.0f} events/s  ({spent * 1e6 / events:6.2f} µs/event)")


@contextlib.contextmanager
def stage_clocks() -> Iterator[None]:
    """The functions of ``CLOCKED`` wrapped in stage clocks, for the ``with`` block."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in CLOCKED]
    for owner, name, stage in CLOCKED:
        setattr(owner, name, stageclock.clocked(stage, getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def deliver(data_dir: Path, total: int) -> tuple[int, Clocks]:
    """Deliver ``data_dir``'s buffer into a new lake with a ``DeliveryWorker``; the CPU ns of
    its thread and the stage clocks' totals over it."""
    config = LakeConfig(type="lake", inputs=["events"], batch={"max_events": 10_000})
    sink = LakeSink("lake", config, data_dir)
    sink.open()
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    conn.close()
    # the stream's columns settled by an earlier batch, as in a pipeline that has been running
    sink.write(expand_events(click_request(-1, 1)), state.Checkpoint("lake"))
    metrics, stop = Registry(), threading.Event()
    worker = DeliveryWorker(
        sink, ["events"], batch=config.batch, retry=RetrySettings(),
        buffer=LocalBuffer(LocalBufferSettings(), data_dir), state_path=data_dir / "state.db",
        metrics=metrics, stop=stop,
    )  # fmt: skip
    delivered = key("headrace_events_delivered_total", sink="lake")
    before = Clocks.of(stageclock.snapshot())
    worker.thread.start()
    deadline = time.monotonic() + 600
    while metrics.values.get(delivered, 0) < total:
        if not worker.thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit(f"delivery stopped at {metrics.values.get(delivered, 0)} of {total}")
        time.sleep(0.005)
    after = Clocks.of(stageclock.snapshot())  # the thread's CPU, read while it lives
    stop.set()
    worker.thread.join()
    sink.close()
    return after.threads[worker.thread.name], after.since(before)


def delivery_profile(clocks: Clocks, cpu_ns: int, requests: int, events: int) -> Profile:
    """The per-stage table of one clocked delivery (``cpu_ns``: the delivery thread's CPU)."""
    c = clocks
    profile = Profile("delivery into the lake", requests, events)
    inner = ("dedupe check", "parse bodies", "build columns", "write", "commit (lake)")
    outer = ("read frames", "decode", "transform", "sink write", "commit (checkpoint)")
    for stage in ("read frames", "decode", "transform"):
        if c.calls(stage):
            profile.add(stage, c.cpu(stage), c.calls(stage))
    if c.calls("parse bodies"):
        profile.add("parse bodies (Arrow)", c.cpu("parse bodies"), c.calls("parse bodies"))
    profile.add(
        "shape rows, group requests (sink write, the rest)",
        c.cpu("sink write") - sum(map(c.cpu, inner)),
    )
    if c.calls("dedupe check"):
        profile.add("dedupe check", c.cpu("dedupe check"), c.calls("dedupe check"))
    profile.add("build columns", c.cpu("build columns"), c.calls("build columns"))
    profile.add("write (parquet)", c.cpu("write"), c.calls("write"))
    commits = c.calls("commit (lake)") + c.calls("commit (checkpoint)")
    profile.add(
        "commit (catalog + checkpoint)",
        c.cpu("commit (lake)") + c.cpu("commit (checkpoint)"),
        commits,
    )
    profile.add("acknowledge", c.cpu("acknowledge"), c.calls("acknowledge"))
    staged = sum(map(c.cpu, outer)) + c.cpu("acknowledge")
    profile.add("delivery loop, rest (batching, polls)", cpu_ns - staged)
    return profile


def profile_delivery(root: Path, args: argparse.Namespace, rounds: int = 2) -> dict[str, object]:
    """Deliver fresh copies of the buffer ``rounds`` times without and with clocks, in turns;
    print the table of the clocked turns and what the clocks cost."""
    total = args.requests * args.batch
    plain: list[int] = []
    clocked: list[int] = []
    clocks = Clocks()
    fill(root / "warm-up" / "buffer", args.requests, args.batch)
    deliver(root / "warm-up", total)  # imports, first files, caches: paid before the turns
    for turn in range(2 * rounds):
        data_dir = root / f"turn{turn}"
        fill(data_dir / "buffer", args.requests, args.batch)
        if turn % 2 == 0:
            cpu_ns, _ = deliver(data_dir, total)
            plain.append(cpu_ns)
        else:
            with stage_clocks():
                cpu_ns, got = deliver(data_dir, total)
            clocked.append(cpu_ns)
            clocks = clocks.plus(got)
    rate = total * rounds / (sum(plain) / 1e9)
    print(f"\n{'delivery worker, unclocked':<28} {rate:>12,.0f} events per CPU second")
    print(f"{'delivery worker, clocked':<28} {total * rounds / (sum(clocked) / 1e9):>12,.0f}")
    overhead = sum(clocked) / sum(plain)
    print(f"the clocks' cost: clocked/unclocked CPU = {overhead:.3f}")
    profile = delivery_profile(clocks, sum(clocked), args.requests * rounds, total * rounds)
    profile.print()
    print(f"  each clocked call costs about {clock_cost_ns() / 1e3:.2f} µs CPU")
    return {
        "profiles": [profile.as_dict()],
        "figures": {
            "delivery worker events per CPU second": rate,
            "delivery clocked/unclocked CPU": overhead,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="stored requests")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--profile", action="store_true", help="print CPU per delivery stage")
    parser.add_argument(
        "--profile-out", type=Path, help="write the table as JSON (stageprofile.py)"
    )
    parser.add_argument(
        "--functions", action="store_true", help="print the top functions of a write"
    )
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

        if args.functions:
            profiler = cProfile.Profile()
            profiler.enable()
        timed("lake write (shape + parquet)", write, total, results)
        if args.functions:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        stored: list[BufferedRequest] = []
        timed("read frames", lambda: stored.extend(read_requests(data_dir / "buffer")), total,
              results)  # fmt: skip

        # the stream's first batch settles its columns (through ``write``, as the delivery worker
        # does when ``write_requests`` declines it); the timed pass is every batch after that
        arrow_sink = LakeSink("lake", config, data_dir / "arrow")
        arrow_sink.open()
        assert arrow_sink._conn is not None
        state.init_schema(arrow_sink._conn)
        arrow_sink.write(expand_events(stored[0]), state.Checkpoint("lake"))
        assert arrow_sink.write_requests(stored[:1], state.Checkpoint("lake")) is not None

        def write_stored() -> None:
            per_batch = max(chunk // args.batch, 1)
            for start in range(0, len(stored), per_batch):
                batch = stored[start : start + per_batch]
                assert arrow_sink.write_requests(batch, state.Checkpoint("lake")) is not None

        timed("lake write (stored requests)", write_stored, total, results)
        arrow_sink.close()
        dict_path = results["read + decode (baseline)"] + results["lake write (shape + parquet)"]
        arrow_path = results["read frames"] + results["lake write (stored requests)"]
        share = results["read + decode (baseline)"] / dict_path
        print(f"\nreading and decoding are {share:.0%} of delivering into the lake by events; "
              f"end to end {total / dict_path:,.0f} events per CPU second")  # fmt: skip
        print(f"from stored requests (Arrow parses the bodies): {total / arrow_path:,.0f} events "
              f"per CPU second, {dict_path / arrow_path:.2f}x the path by events")  # fmt: skip
        if args.profile:
            doc = profile_delivery(data_dir / "profile", args)
            figures = doc["figures"]
            figures["read + decode + lake write events per CPU second"] = total / dict_path  # type: ignore[index]
            figures["lake write from stored requests events per CPU second"] = total / arrow_path  # type: ignore[index]
            if args.profile_out is not None:
                args.profile_out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
