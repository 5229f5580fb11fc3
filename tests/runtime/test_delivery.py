from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from headrace.buffer.local.frames import encode_frame
from headrace.buffer.local.segments import SegmentWriter
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest, expand_events
from headrace.config.base import BatchSettings, RetrySettings
from headrace.errors import TerminalSinkError, TransientSinkError
from headrace.ids import new_base_id
from headrace.runtime.delivery import DeliveryWorker
from headrace.storage import state
from headrace.telemetry.metrics import Registry, key
from headrace.types import Event, FailedRecord, WriteResult
from support.buffer import local_buffer


class RecordingSink:
    """A sink that fails on demand: the runtime's retry and dead-letter paths need a seam."""

    capabilities = frozenset({"append"})
    commits_checkpoint = False

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.id = "out"
        self.failures = list(failures or [])
        self.batches: list[list[Event]] = []
        self.refuse: set[int] = set()

    def open(self) -> None: ...
    def health(self) -> str | None:
        return None

    def maintain(self) -> None: ...
    def close(self) -> None: ...

    def write(self, events: list[Event], checkpoint: state.Checkpoint) -> WriteResult:
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(events)
        return WriteResult(
            [FailedRecord(e, "bad_row", "no") for e in events if e.data.get("n") in self.refuse]
        )


def fill(
    buffer_dir: Path, batches: list[list[dict[str, Any]] | bytes], source: str = "src"
) -> None:
    """Store each batch as one request (``bytes``: a body as it is, said to hold one event)."""
    import msgspec

    w = SegmentWriter(buffer_dir, "w0", segment_bytes=1 << 20, segment_age=3600)
    w.open()
    for events in batches:
        base = new_base_id().to_bytes(16, "big")
        body = events if isinstance(events, bytes) else msgspec.json.encode(events)
        count = 1 if isinstance(events, bytes) else len(events)
        w.append(
            [
                encode_frame(
                    BufferedRequest(
                        time.time_ns() // 1000, base, "s", source, count, FORMAT_ARRAY, body
                    )
                )
            ]
        )
    w.close()


def run_worker(
    data_dir: Path,
    sink: RecordingSink,
    *,
    until: Any,
    retry: RetrySettings | None = None,
    max_events: int = 1000,
) -> tuple[DeliveryWorker, Registry]:
    metrics = Registry()
    stop = threading.Event()
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    worker = DeliveryWorker(
        sink,
        ["src"],
        batch=BatchSettings(max_events=max_events, max_age=0.05),
        retry=retry or RetrySettings(initial_backoff=0.01, max_backoff=0.02),
        buffer=local_buffer(data_dir),
        state_path=data_dir / "state.db",
        metrics=metrics,
        stop=stop,
    )
    worker.thread.start()
    deadline = time.monotonic() + 10
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    worker.thread.join(10)
    assert until(), "delivery did not reach the expected state"
    return worker, metrics


def delivered(sink: RecordingSink) -> list[int]:
    return [e.data["n"] for batch in sink.batches for e in batch]


def test_delivers_in_batches_and_saves_positions(data_dir: Path) -> None:
    fill(data_dir / "buffer", [[{"n": i * 10 + k} for k in range(10)] for i in range(5)])
    sink = RecordingSink()
    run_worker(data_dir, sink, until=lambda: len(delivered(sink)) == 50, max_events=20)
    assert sorted(delivered(sink)) == list(range(50))
    assert max(len(b) for b in sink.batches) <= 20
    again = RecordingSink()
    run_worker(data_dir, again, until=lambda: True)
    assert delivered(again) == []  # positions were saved: nothing is delivered twice


def test_transient_failures_are_retried_then_delivered(data_dir: Path) -> None:
    fill(data_dir / "buffer", [[{"n": 1}]])
    sink = RecordingSink([TransientSinkError("down"), TransientSinkError("still down")])
    _, metrics = run_worker(data_dir, sink, until=lambda: delivered(sink) == [1])
    assert metrics.values[key("headrace_sink_retries_total", sink="out")] == 2


def test_terminal_failures_and_refused_rows_go_to_dead_letters(data_dir: Path) -> None:
    fill(data_dir / "buffer", [[{"n": 1}, {"n": 2}]])
    sink = RecordingSink([TerminalSinkError("schema", "table is gone")])
    run_worker(
        data_dir,
        sink,
        until=lambda: state.list_dead_letters(state.connect(data_dir / "state.db")) != [],
    )
    (letter,) = [
        dl
        for dl in state.list_dead_letters(state.connect(data_dir / "state.db"))
        if dl.reason == "schema"
    ][:1]
    assert (letter.sink, letter.error, letter.attempts) == ("out", "table is gone", 1)
    fill(data_dir / "buffer", [[{"n": 3}, {"n": 4}]])
    refusing = RecordingSink()
    refusing.refuse = {4}
    run_worker(
        data_dir,
        refusing,
        until=lambda: len(state.list_dead_letters(state.connect(data_dir / "state.db"))) == 3,
    )
    reasons = sorted(
        dl.reason for dl in state.list_dead_letters(state.connect(data_dir / "state.db"))
    )
    assert reasons == ["bad_row", "schema", "schema"]


def test_attempt_limit_sends_the_batch_to_dead_letters(data_dir: Path) -> None:
    fill(data_dir / "buffer", [[{"n": 1}]])
    sink = RecordingSink([TransientSinkError("down")] * 5)
    retry = RetrySettings(initial_backoff=0.001, max_backoff=0.001, max_attempts=3)
    run_worker(
        data_dir,
        sink,
        retry=retry,
        until=lambda: state.list_dead_letters(state.connect(data_dir / "state.db")) != [],
    )
    (letter,) = state.list_dead_letters(state.connect(data_dir / "state.db"))
    assert (letter.reason, letter.attempts) == ("retries_exhausted", 3)


def test_events_of_other_sources_are_skipped_but_passed(data_dir: Path) -> None:
    fill(data_dir / "buffer", [[{"n": 1}]], source="elsewhere")
    fill(data_dir / "buffer", [[{"n": 2}]])
    sink = RecordingSink()
    run_worker(data_dir, sink, until=lambda: delivered(sink) == [2])


def test_an_unexpected_error_ends_the_worker_visibly(data_dir: Path) -> None:
    (data_dir / "buffer").write_text("not a directory")  # every read of the buffer fails
    metrics = Registry()
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    worker = DeliveryWorker(
        RecordingSink(), ["src"], batch=BatchSettings(), retry=RetrySettings(),
        buffer=local_buffer(data_dir), state_path=data_dir / "state.db", metrics=metrics,
        stop=threading.Event(),
    )  # fmt: skip
    worker.thread.start()
    worker.thread.join(10)
    assert not worker.thread.is_alive()  # the delivery process sees this and exits to restart
    assert metrics.values[key("headrace_sink_healthy", sink="out")] == 0


class RequestsSink(RecordingSink):
    """A sink that takes stored requests as they are (``write_requests``), declining a batch
    that holds a ``"skip"`` field."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        super().__init__(failures)
        self.taken: list[list[BufferedRequest]] = []
        self.declined = 0

    def write_requests(
        self, requests: list[BufferedRequest], checkpoint: state.Checkpoint
    ) -> WriteResult | None:
        if self.failures:
            raise self.failures.pop(0)
        if any(b'"skip"' in r.body for r in requests):
            self.declined += 1
            return None
        self.taken.append(requests)
        return WriteResult()


def taken(sink: RequestsSink) -> list[int]:
    return [e.data["n"] for batch in sink.taken for r in batch for e in expand_events(r)]


def dead_letters(data_dir: Path) -> list[state.DeadLetter]:
    return state.list_dead_letters(state.connect(data_dir / "state.db"))


def test_a_sink_that_parses_stored_requests_is_handed_them_undecoded(data_dir: Path) -> None:
    fill(data_dir / "buffer", [[{"n": i * 10 + k} for k in range(10)] for i in range(5)])
    sink = RequestsSink()
    _, metrics = run_worker(data_dir, sink, until=lambda: len(taken(sink)) == 50, max_events=20)
    assert sorted(taken(sink)) == list(range(50)) and sink.batches == []
    assert max(sum(r.count for r in batch) for batch in sink.taken) <= 20
    assert metrics.values[key("headrace_events_delivered_total", sink="out")] == 50
    again = RequestsSink()
    run_worker(data_dir, again, until=lambda: True)
    assert taken(again) == []  # the positions were saved with the batches


def test_a_declined_batch_is_decoded_for_write_and_a_bad_body_is_a_dead_letter(
    data_dir: Path,
) -> None:
    fill(data_dir / "buffer", [[{"n": 1}], [{"n": 2, "skip": True}], b'[{"n": 3}, oops]'])
    sink = RequestsSink()
    run_worker(data_dir, sink, until=lambda: sorted(delivered(sink)) == [1, 2])
    assert sink.declined == 1 and sink.taken == []
    (letter,) = dead_letters(data_dir)
    assert letter.reason == "decode_error"


def test_a_terminal_refusal_of_stored_requests_dead_letters_their_events(data_dir: Path) -> None:
    fill(data_dir / "buffer", [[{"n": 1}, {"n": 2}]])
    sink = RequestsSink([TerminalSinkError("schema", "table is gone")])
    run_worker(data_dir, sink, until=lambda: len(dead_letters(data_dir)) == 2)
    assert {(dl.reason, dl.error) for dl in dead_letters(data_dir)} == {("schema", "table is gone")}


def test_stored_requests_are_retried_after_a_transient_failure(data_dir: Path) -> None:
    fill(data_dir / "buffer", [[{"n": 1}]])
    sink = RequestsSink([TransientSinkError("down")])
    _, metrics = run_worker(data_dir, sink, until=lambda: taken(sink) == [1])
    assert metrics.values[key("headrace_sink_retries_total", sink="out")] == 1
