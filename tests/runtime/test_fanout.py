"""Fan-out: one source feeds several sinks, each through its own transforms, positions,
retries and dead letters; one failing sink never blocks or duplicates into another."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from headrace.buffer.local.frames import encode_frame
from headrace.buffer.local.positions import load_positions
from headrace.buffer.local.segments import SegmentWriter
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest, dead_letter_requests
from headrace.config.base import BatchSettings, RetrySettings
from headrace.config.graph import routes_of
from headrace.config.load import parse_pipeline
from headrace.errors import ConfigError, TerminalSinkError, TransientSinkError
from headrace.ids import new_base_id
from headrace.runtime.delivery import DeliveryWorker
from headrace.storage import state
from headrace.telemetry.metrics import Registry
from headrace.transforms import TransformContext
from headrace.transforms.graph import SinkTransforms
from headrace.types import Event, FailedRecord, WriteResult
from support.buffer import fill as fill_buffer
from support.buffer import local_buffer


def fill(buffer_dir: Path, batches: list[list[dict[str, Any]]]) -> None:
    """Requests of source ``src`` in the buffer, as ingest stores them."""
    writer = SegmentWriter(buffer_dir, "w0", segment_bytes=1 << 20, segment_age=3600)
    writer.open()
    for events in batches:
        request = BufferedRequest(time.time_ns() // 1000, new_base_id().to_bytes(16, "big"), "s",
                                  "src", len(events), FORMAT_ARRAY, msgspec.json.encode(events))  # fmt: skip
        writer.append([encode_frame(request)])
    writer.close()


PIPELINE = """
sources:
  src: {type: http}
transforms:
  only_clicks:
    type: filter
    inputs: [src]
    condition: {field: type, equals: click}
  stamp:
    type: remap
    inputs: [only_clicks]
    copy: {timestamp: $received_at_ms}
  once:
    type: dedupe
    inputs: [src]
    fields: [n]
sinks:
  good: {type: lake, inputs: [stamp]}
  flaky: {type: lake, inputs: [once]}
"""


class Sink:
    capabilities = frozenset({"append"})
    commits_checkpoint = False

    def __init__(self, sink_id: str, fail: bool = False) -> None:
        self.id = sink_id
        self.fail = fail
        self.events: list[Event] = []
        self.attempts = 0

    def open(self) -> None: ...
    def health(self) -> str | None:
        return None

    def maintain(self) -> None: ...
    def close(self) -> None: ...

    def write(self, events: list[Event], checkpoint: state.Checkpoint) -> WriteResult:
        self.attempts += 1
        if self.fail:
            raise TransientSinkError("down")
        self.events.extend(events)
        return WriteResult()


def start(data_dir: Path, sink: Sink, stop: threading.Event) -> DeliveryWorker:
    pipeline = parse_pipeline(PIPELINE, env={})
    transforms = SinkTransforms(pipeline, sink.id)
    transforms.open(TransformContext(sink.id, data_dir / "state.db"))
    worker = DeliveryWorker(
        sink, ["src"], batch=BatchSettings(max_age=0.05),
        retry=RetrySettings(initial_backoff=0.01, max_backoff=0.05),
        buffer=local_buffer(data_dir), state_path=data_dir / "state.db",
        metrics=Registry(), stop=stop, transforms=transforms,
    )  # fmt: skip
    worker.thread.start()
    return worker


def wait(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_a_failing_sink_does_not_block_the_other_and_each_has_its_own_transforms(
    data_dir: Path,
) -> None:
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    fill(data_dir / "buffer", [[{"n": i, "type": "click" if i % 2 else "view"} for i in range(10)],
                               [{"n": 1, "type": "click"}]])  # fmt: skip
    stop = threading.Event()
    good, flaky = Sink("good"), Sink("flaky", fail=True)
    workers = [start(data_dir, good, stop), start(data_dir, flaky, stop)]
    wait(lambda: len(good.events) == 6 and flaky.attempts >= 3)
    # good: filtered to clicks, stamped; its position is saved although flaky keeps failing
    assert sorted(e.data["n"] for e in good.events) == [1, 1, 3, 5, 7, 9]
    assert all(e.data["timestamp"] == e.received_at_us // 1000 for e in good.events)
    assert load_positions(conn, "good")[0]
    assert not load_positions(conn, "flaky")[0]
    stop.set()
    for w in workers:
        w.thread.join(10)
    # flaky recovers after a restart: it gets everything once, deduped by its own window
    flaky.fail = False
    stop = threading.Event()
    worker = start(data_dir, flaky, stop)
    wait(lambda: len(flaky.events) == 10)
    time.sleep(0.2)
    stop.set()
    worker.thread.join(10)
    assert sorted(e.data["n"] for e in flaky.events) == list(range(10))
    assert len(good.events) == 6  # nothing was delivered twice into good


def test_transform_failures_go_to_the_sinks_dead_letters(data_dir: Path) -> None:
    pipeline = parse_pipeline(
        """
        sources: {src: {type: http}}
        transforms:
          cast: {type: remap, inputs: [src], cast: {n: int}}
        sinks:
          out: {type: lake, inputs: [cast]}
        """,
        env={},
    )
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    fill(data_dir / "buffer", [[{"n": "1"}, {"n": "one"}]])
    sink = Sink("out")
    transforms = SinkTransforms(pipeline, "out")
    transforms.open(TransformContext("out", data_dir / "state.db"))
    stop = threading.Event()
    worker = DeliveryWorker(
        sink, ["src"], batch=BatchSettings(max_age=0.05), retry=RetrySettings(),
        buffer=local_buffer(data_dir), state_path=data_dir / "state.db",
        metrics=Registry(), stop=stop, transforms=transforms,
    )  # fmt: skip
    worker.thread.start()
    wait(lambda: len(sink.events) == 1)
    stop.set()
    worker.thread.join(10)
    assert sink.events[0].data == {"n": 1}
    (dead,) = state.list_dead_letters(conn, sink="out")
    assert dead.reason == "cast_failed" and dead.error.startswith("cast: ")
    assert dead.data == '{"n":"one"}'  # the event as it came, so a replay runs the transforms again


def test_routes_and_graph_problems() -> None:
    pipeline = parse_pipeline(PIPELINE, env={})
    assert routes_of(pipeline, "good") == {"src": ["only_clicks", "stamp"]}
    assert pipeline.sinks_for_source("src") == ["good", "flaky"]
    bad = """
    sources: {src: {type: http}}
    transforms:
      a: {type: filter, inputs: [b], condition: {field: x, exists: true}}
      b: {type: filter, inputs: [a], condition: {field: x, exists: true}}
      c: {type: filter, inputs: [src], condition: {field: x, exists: true}}
      unused: {type: filter, inputs: [src], condition: {field: x, exists: true}}
    sinks:
      twice: {type: lake, inputs: [src, c]}
      loop: {type: lake, inputs: [a]}
    """
    try:
        parse_pipeline(bad, env={})
    except ConfigError as exc:
        messages = {p.path: p.message for p in exc.problems}
    else:
        raise AssertionError("accepted")
    assert messages["transforms.a.inputs"] == "the inputs form a cycle"
    assert "reaches this sink twice (src and src → c)" in messages["sinks.twice.inputs"]
    assert messages["transforms.unused"] == "is not an input of any sink or transform"


def test_dedupe_state_commits_in_the_lake_transaction(data_dir: Path) -> None:
    from headrace.sinks.lake.sink import LakeSink
    from headrace.storage.lake_catalog import LAKE_SCHEMA, files_for

    pipeline = parse_pipeline(
        """
        sources: {src: {type: http}}
        transforms:
          once: {type: dedupe, inputs: [src], fields: [n]}
        sinks:
          lake: {type: lake, inputs: [once]}
        """,
        env={},
    )
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn, [LAKE_SCHEMA])

    def run(batches: list[list[dict[str, Any]]], expected_files: int) -> None:
        fill(data_dir / "buffer", batches)
        sink = LakeSink("lake", pipeline.sinks["lake"], data_dir)  # type: ignore[arg-type]
        sink.open()
        transforms = SinkTransforms(pipeline, "lake")
        transforms.open(TransformContext("lake", data_dir / "state.db"))
        stop = threading.Event()
        worker = DeliveryWorker(
            sink, ["src"], batch=BatchSettings(max_age=0.05), retry=RetrySettings(),
            buffer=local_buffer(data_dir), state_path=data_dir / "state.db",
            metrics=Registry(), stop=stop, transforms=transforms,
        )  # fmt: skip
        worker.thread.start()
        wait(lambda: len(files_for(conn, "lake", "s")) == expected_files)
        time.sleep(0.2)
        stop.set()
        worker.thread.join(10)
        transforms.close()
        sink.close()

    run([[{"n": 1}, {"n": 2}, {"n": 1}]], 1)
    run([[{"n": 2}, {"n": 3}]], 2)  # a restart: n=2 is remembered, n=3 is new
    rows = sum(f.rows for f in files_for(conn, "lake", "s"))
    assert rows == 3
    scope_rows = conn.execute("SELECT count(*) FROM transform_dedupe WHERE scope = 'lake/once'")
    assert scope_rows.fetchone()[0] == 3


class RefusingSink(Sink):
    """Refuses the events whose ``id`` is in ``refuse`` (one by one, or the whole batch)."""

    def __init__(self, sink_id: str, refuse: set[int], terminal: bool = False) -> None:
        super().__init__(sink_id)
        self.refuse = refuse
        self.terminal = terminal

    def write(self, events: list[Event], checkpoint: state.Checkpoint) -> WriteResult:
        refused = [e for e in events if e.data["id"] in self.refuse]
        if refused and self.terminal:
            raise TerminalSinkError("rejected", "no")
        self.events.extend(e for e in events if e not in refused)
        return WriteResult([FailedRecord(e, "rejected", "no") for e in refused])


RENAME = """
sources: {src: {type: http}}
transforms:
  ren: {type: remap, inputs: [src], copy: {client_status: status}, add: {status: ingested}}
sinks:
  out: {type: lake, inputs: [ren]}
"""


def deliver_with(data_dir: Path, sink: Sink, until: Any) -> None:
    pipeline = parse_pipeline(RENAME, env={})
    transforms = SinkTransforms(pipeline, "out")
    transforms.open(TransformContext("out", data_dir / "state.db"))
    stop = threading.Event()
    worker = DeliveryWorker(
        sink, ["src"], batch=BatchSettings(max_age=0.05), retry=RetrySettings(),
        buffer=local_buffer(data_dir), state_path=data_dir / "state.db",
        metrics=Registry(), stop=stop, transforms=transforms,
    )  # fmt: skip
    worker.thread.start()
    wait(until)
    time.sleep(0.1)
    stop.set()
    worker.thread.join(10)
    transforms.close()


def test_a_replayed_sink_refusal_is_transformed_once(data_dir: Path) -> None:
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    fill(data_dir / "buffer", [[{"id": 1, "status": "new"}, {"id": 2, "status": "new"}]])
    sink = RefusingSink("out", refuse={2})
    deliver_with(data_dir, sink, lambda: state.list_dead_letters(conn, sink="out"))
    (dead,) = state.list_dead_letters(conn, sink="out")
    assert dead.data == '{"id":2,"status":"new"}'  # as it came, not as the transforms made it
    sink.refuse = set()
    fill_buffer(data_dir, dead_letter_requests([dead]))
    deliver_with(data_dir, sink, lambda: len(sink.events) == 2)
    assert [e.data for e in sink.events] == [
        {"id": 1, "status": "ingested", "client_status": "new"},
        {"id": 2, "status": "ingested", "client_status": "new"},
    ]


def test_a_batch_the_sink_refuses_is_dead_lettered_as_it_came(data_dir: Path) -> None:
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    fill(data_dir / "buffer", [[{"id": 1, "status": "new"}]])
    sink = RefusingSink("out", refuse={1}, terminal=True)
    deliver_with(data_dir, sink, lambda: state.list_dead_letters(conn, sink="out"))
    (dead,) = state.list_dead_letters(conn, sink="out")
    assert dead.reason == "rejected" and dead.data == '{"id":1,"status":"new"}'
