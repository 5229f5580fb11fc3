"""enrich_http against a real HTTP service that is slow, fails and errors part of the time."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest

from headrace.buffer.local.frames import encode_frame
from headrace.buffer.local.segments import SegmentWriter
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest, dead_letter_requests
from headrace.config.base import BatchSettings, RetrySettings
from headrace.config.load import parse_pipeline
from headrace.ids import new_base_id
from headrace.runtime.delivery import DeliveryWorker
from headrace.storage import state
from headrace.telemetry.metrics import Registry
from headrace.transforms import TransformContext
from headrace.transforms.enrich.config import EnrichConfig
from headrace.transforms.enrich.lookup import EnrichHttp
from headrace.transforms.graph import SinkTransforms
from headrace.types import Event, WriteResult
from support.buffer import fill as fill_buffer
from support.buffer import local_buffer
from support.enrichservice import Behaviour, lookup_service


@pytest.fixture
def made() -> Iterator[list[EnrichHttp]]:
    out: list[EnrichHttp] = []
    yield out
    for transform in out:
        transform.close()


def make(made: list[EnrichHttp], url: str, **kw: Any) -> EnrichHttp:
    config = EnrichConfig.model_validate(
        {"type": "enrich_http", "inputs": ["web"], "url": f"{url}/mysfits/{{mysfitId}}", **kw}
    )
    transform = EnrichHttp("enrich", config)
    transform.open(TransformContext("sink", Path("/nonexistent")))
    made.append(transform)
    return transform


def clicks(*ids: str) -> list[Event]:
    return [
        Event(f"e{i}", "clicks", "web", i, {"userId": "u", "mysfitId": m})
        for i, m in enumerate(ids)
    ]


def test_flaky_slow_and_missing_lookups_affect_only_their_records(made: list[EnrichHttp]) -> None:
    behaviour = Behaviour(fail_every=3, slow_ids={"slow"}, missing_ids={"gone"}, slow_seconds=1.0)
    with lookup_service(behaviour) as (url, b):
        transform = make(made, url, timeout=0.3, retries=3, backoff=0.01,
                         circuit_breaker={"failures": 50})  # fmt: skip
        ids = [f"m{i % 10}" for i in range(40)] + ["slow", "gone"]
        result = transform.apply(clicks(*ids))
        assert len(result.events) == 40
        first = result.events[0].data
        assert first == {"species": "species-m0", "goodevil": "Good", "lawchaos": "Neutral",
                         "age": 2, "userId": "u", "mysfitId": "m0"}  # fmt: skip
        failed = {f.event.data["mysfitId"]: f for f in result.failed}
        assert set(failed) == {"slow", "gone"}
        assert failed["gone"].reason == "enrich_failed" and "404" in failed["gone"].error
        assert "ReadTimeout" in failed["slow"].error
        assert b.requests["/mysfits/gone"] == 1  # a 404 is not retried
        # each distinct id was looked up once (plus retries of 503s); the batch's repeats hit
        assert transform.stats.cache_hits == 30
        before = b.total
        again = transform.apply(clicks(*[f"m{i}" for i in range(10)]))
        assert len(again.events) == 10 and b.total == before  # all from the cache


def test_the_circuit_breaker_stops_calls_and_lets_one_trial_through(made: list[EnrichHttp]) -> None:
    with lookup_service(Behaviour(always_fail=True)) as (url, b):
        transform = make(made, url, retries=0, concurrency=1, on_failure="keep",
                         circuit_breaker={"failures": 3, "reset_after": 0.3})  # fmt: skip
        result = transform.apply(clicks(*[f"x{i}" for i in range(10)]))
        assert [e.data for e in result.events] == [
            e.data for e in clicks(*[f"x{i}" for i in range(10)])
        ]
        assert b.total == 3  # then the circuit opened and the rest failed fast
        time.sleep(0.35)
        b.always_fail = False
        healed = transform.apply(clicks("y1", "y2"))
        assert all("species" in e.data for e in healed.events)
        assert b.total == 5


def test_drop_target_select_concurrency_and_encoding(made: list[EnrichHttp]) -> None:
    with lookup_service(Behaviour(delay=0.05, missing_ids={"gone"})) as (url, b):
        transform = make(made, url, on_failure="drop", target="mysfit", select=["species"],
                         concurrency=4)  # fmt: skip
        result = transform.apply(clicks(*[f"c{i}" for i in range(20)], "gone", "../admin"))
        assert result.dropped == 1
        assert b.max_in_flight <= 4
        assert result.events[0].data["mysfit"] == {"species": "species-c0"}
        assert b.requests["/mysfits/..%2Fadmin"] == 1  # a value never leaves its path segment


def test_a_record_without_the_field_follows_on_failure(made: list[EnrichHttp]) -> None:
    with lookup_service() as (url, _b):
        transform = make(made, url)
        event = Event("e", "clicks", "web", 0, {"userId": "u"})
        (failed,) = transform.apply([event]).failed
        assert "mysfitId" in failed.error


def test_the_host_cannot_come_from_an_event() -> None:
    with pytest.raises(ValueError, match="host"):
        EnrichConfig.model_validate(
            {"type": "enrich_http", "inputs": ["w"], "url": "http://{host}/x"}
        )


def test_a_huge_value_fails_its_record_not_the_batch(made: list[EnrichHttp]) -> None:
    # httpx refuses a URL over 64 KiB with InvalidURL, which is not an HTTPError: it used to
    # escape apply() and make the sink retry the same batch for ever.
    with lookup_service() as (url, b):
        transform = make(made, url, max_url_length=65_536)
        result = transform.apply(clicks("m1", "é" * 12_000))
        assert [e.data["mysfitId"] for e in result.events] == ["m1"]
        (failed,) = result.failed
        assert failed.reason == "enrich_failed" and "max_url_length" in failed.error
        capped = make(made, url).apply(clicks("m2", "x" * 9000))  # default max_url_length 8192
        assert len(capped.events) == 1 and "max_url_length" in capped.failed[0].error
        assert b.requests.total() == 2  # m1 and m2; the huge values were never sent


def test_an_unexpected_error_fails_its_record_and_frees_the_breaker_trial(
    made: list[EnrichHttp], monkeypatch: pytest.MonkeyPatch
) -> None:
    with lookup_service(Behaviour(always_fail=True)) as (url, b):
        transform = make(made, url, retries=0, concurrency=1, on_failure="keep",
                         circuit_breaker={"failures": 1, "reset_after": 0.1})  # fmt: skip
        transform.apply(clicks("x1"))
        assert transform.breaker.open
        time.sleep(0.15)
        real_stream = transform._client.stream

        def broken(method: str, target: str) -> Any:
            raise RuntimeError("not an httpx error")

        monkeypatch.setattr(transform._client, "stream", broken)
        result = transform.apply(clicks("x2"))  # the half-open trial raises
        assert len(result.events) == 1
        monkeypatch.setattr(transform._client, "stream", real_stream)
        b.always_fail = False
        healed = transform.apply(clicks("x3"))  # the trial was given back: a new one is let through
        assert "species" in healed.events[0].data


def test_dot_segments_and_empty_values_never_reach_another_path(made: list[EnrichHttp]) -> None:
    with lookup_service() as (url, b):
        transform = make(made, url, on_failure="dead_letter")
        result = transform.apply(clicks("..", ".", "", "m1", "../../admin"))
        assert [e.data["mysfitId"] for e in result.events] == ["m1", "../../admin"]
        assert [f.event.data["mysfitId"] for f in result.failed] == ["..", ".", ""]
        assert all("cannot name a resource" in f.error for f in result.failed)
        assert set(b.requests) == {"/mysfits/m1", "/mysfits/..%2F..%2Fadmin"}


def test_a_dripping_or_huge_answer_is_cut_off(made: list[EnrichHttp]) -> None:
    with lookup_service(Behaviour(drip_ids={"drip"}, huge_ids={"huge"})) as (url, _b):
        transform = make(made, url, timeout=1.0, retries=0)
        started = time.monotonic()
        result = transform.apply(clicks("drip", "huge", "m1"))
        took = time.monotonic() - started
        assert [e.data["mysfitId"] for e in result.events] == ["m1"]
        failed = {f.event.data["mysfitId"]: f.error for f in result.failed}
        assert "took over 1s" in failed["drip"]  # 19 bytes at 0.3 s each would take 5.7 s
        assert "max_response_bytes" in failed["huge"]
        assert took < 3.0


def test_the_breaker_counts_lookups_not_attempts_and_not_missing_ids(
    made: list[EnrichHttp],
) -> None:
    behaviour = Behaviour(always_fail=True)
    with lookup_service(behaviour) as (url, b):
        transform = make(made, url, retries=2, backoff=0.01, concurrency=1,
                         circuit_breaker={"failures": 3, "reset_after": 30})  # fmt: skip
        result = transform.apply(clicks("x1", "x2"))
        assert len(result.failed) == 2 and b.total == 6  # every retry was made
        assert not transform.breaker.open  # two failed lookups, not six failures
        b.always_fail = False
        b.missing_ids = {f"gone{i}" for i in range(5)}
        b.total = 0
        missing = transform.apply(clicks(*sorted(b.missing_ids)))
        assert all("404" in f.error for f in missing.failed) and b.total == 5
        assert not transform.breaker.open  # "not found" says the service works
        b.always_fail = True
        transform.apply(clicks("y1", "y2", "y3"))
        assert transform.breaker.open


class _AnswersNull(BaseHTTPRequestHandler):
    """A service that knows nothing of any id: it answers JSON ``null`` (and counts requests)."""

    protocol_version = "HTTP/1.1"
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "4")
        self.end_headers()
        self.wfile.write(b"null")

    def log_message(self, *args: Any) -> None:
        pass


def test_a_null_answer_is_cached_like_any_other(made: list[EnrichHttp]) -> None:
    handler = type("Handler", (_AnswersNull,), {"requests": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transform = make(made, f"http://127.0.0.1:{server.server_address[1]}", target="mysfit",
                         cache_ttl=300)  # fmt: skip
        first = transform.apply(clicks("m1"))
        second = transform.apply(clicks("m1"))
        assert [e.data["mysfit"] for e in first.events + second.events] == [None, None]
        assert handler.requests == 1  # the second lookup was a cache hit
        assert transform.stats.cache_hits == 1
    finally:
        server.shutdown()
        server.server_close()


def failed_by_id(result: Any) -> dict[str, str]:
    return {f.event.data["mysfitId"]: f.error for f in result.failed}


def test_ids_that_fail_on_their_own_do_not_open_the_circuit_for_the_others(
    made: list[EnrichHttp],
) -> None:
    bad, slow = {f"bad{i}" for i in range(6)}, {f"slow{i}" for i in range(3)}
    missing = {f"gone{i}" for i in range(4)}
    behaviour = Behaviour(error_ids=bad, slow_ids=slow, missing_ids=missing, slow_seconds=3.0)
    with lookup_service(behaviour) as (url, b):
        # 13 failing ids would open a circuit counting failures; 9 of 33 ids is not an outage
        transform = make(made, url, timeout=0.5, retries=1, backoff=0.01, concurrency=4,
                         circuit_breaker={"failures": 5, "window": 600})  # fmt: skip
        assert len(transform.apply(clicks(*[f"m{i}" for i in range(20)])).events) == 20
        result = transform.apply(clicks(*sorted(bad), *sorted(slow), *sorted(missing)))
        failed = failed_by_id(result)
        assert set(failed) == bad | slow | missing
        assert failed["bad0"] == "lookup of mysfitId=bad0 failed: the service answered 500 (after 2 attempts)"  # fmt: skip
        assert failed["slow0"].startswith("lookup of mysfitId=slow0 failed: ReadTimeout")
        assert failed["gone0"] == "lookup of mysfitId=gone0 failed: the service answered 404"
        assert not any("circuit" in error for error in failed.values())
        assert not transform.breaker.open
        fresh = transform.apply(clicks("new1"))
        assert fresh.events[0].data["species"] == "species-new1"
        assert b.requests["/mysfits/new1"] == 1 and transform.counters()["enrich_fast_fails"] == 0


def test_one_id_failing_again_and_again_never_opens_the_circuit(made: list[EnrichHttp]) -> None:
    with lookup_service(Behaviour(error_ids={"bad"})) as (url, b):
        transform = make(made, url, retries=0, failure_ttl=0,
                         circuit_breaker={"failures": 2, "failure_ratio": 1.0})  # fmt: skip
        for _ in range(10):
            (failed,) = transform.apply(clicks("bad")).failed
            assert "answered 500" in failed.error
        assert b.requests["/mysfits/bad"] == 10  # failure_ttl 0: asked every time, as configured
        assert not transform.breaker.open
        assert transform.counters()["enrich_circuit_opens"] == 0


def _closes_at(error: str) -> float:
    match = re.search(r"closes at (\S+) if a trial lookup then gets an answer$", error)
    assert match, error
    return datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def test_an_outage_opens_the_circuit_and_the_error_names_the_key_the_evidence_and_the_end(
    made: list[EnrichHttp],
) -> None:
    with lookup_service() as (url, _b):
        pass  # stopped: every connection is refused
    transform = make(made, url, retries=1, backoff=0.01, concurrency=1,
                     circuit_breaker={"failures": 3, "reset_after": 120})  # fmt: skip
    before = time.time()
    result = transform.apply(clicks(*[f"m{i}" for i in range(8)]))
    after = time.time()
    errors = [f.error for f in result.failed]
    assert len(errors) == 8 and transform.breaker.open
    for i in range(3):
        assert errors[i].startswith(f"lookup of mysfitId=m{i} failed: ConnectError: "), errors[i]
        assert errors[i].endswith("(after 2 attempts)")
    assert re.match(
        r"lookup of mysfitId=m3 not made: circuit open: 3 of 3 distinct keys requested in the "
        r"last 30 s failed with connection errors, timeouts, 429 or 5xx \(latest: mysfitId=m2: "
        r"ConnectError: ",
        errors[3],
    ), errors[3]
    for i in range(3, 8):
        assert errors[i].startswith(f"lookup of mysfitId=m{i} not made: circuit open: ")
        assert before + 119 <= _closes_at(errors[i]) <= after + 121
    counters = transform.counters()
    assert counters["enrich_circuit_opens"] == 1 and counters["enrich_fast_fails"] == 5
    assert counters["enrich_requests"] == 6  # the first three ids, two attempts each


def test_timeouts_across_keys_are_an_outage(made: list[EnrichHttp]) -> None:
    slow = {f"s{i}" for i in range(5)}
    with lookup_service(Behaviour(slow_ids=slow, slow_seconds=3.0)) as (url, b):
        transform = make(made, url, timeout=0.2, retries=0, concurrency=1,
                         circuit_breaker={"failures": 3, "reset_after": 120})  # fmt: skip
        failed = failed_by_id(transform.apply(clicks(*sorted(slow))))
        assert "ReadTimeout" in failed["s2"] and "circuit open" in failed["s3"]
        assert b.total == 3


def test_a_timed_out_lookup_is_retried_like_a_5xx(made: list[EnrichHttp]) -> None:
    with lookup_service(Behaviour(slow_once_ids={"s1"}, slow_seconds=3.0)) as (url, b):
        transform = make(made, url, timeout=0.5, retries=2, backoff=0.01)
        result = transform.apply(clicks("s1"))
        assert result.events[0].data["species"] == "species-s1"
        assert b.requests["/mysfits/s1"] >= 2  # the first attempt timed out


def test_a_failed_key_is_remembered_briefly_never_as_an_answer(made: list[EnrichHttp]) -> None:
    with lookup_service(Behaviour(missing_ids={"gone"}, error_ids={"bad"})) as (url, b):
        transform = make(made, url, retries=0, failure_ttl=600)
        transform.apply(clicks("gone", "bad"))
        again = failed_by_id(transform.apply(clicks("gone", "bad", "gone")))
        assert b.requests == {"/mysfits/gone": 1, "/mysfits/bad": 1}  # not asked again
        assert re.fullmatch(
            r"lookup of mysfitId=gone failed: the service answered 404 \(at \S+Z; remembered "
            r"until \S+Z, not requested again until then\)",
            again["gone"],
        ), again["gone"]
        assert again["bad"].startswith("lookup of mysfitId=bad failed: the service answered 500")
        assert transform.counters()["enrich_remembered_failures"] == 2
        brief = make(made, url, retries=0, failure_ttl=0.2)
        assert brief.apply(clicks("gone")).failed
        time.sleep(0.5)  # past failure_ttl
        b.missing_ids.clear()
        healed = brief.apply(clicks("gone"))
        assert healed.events[0].data["species"] == "species-gone"
        assert b.requests["/mysfits/gone"] == 3


def test_a_replay_holding_one_bad_id_drains_and_the_circuit_stays_closed(
    made: list[EnrichHttp],
) -> None:
    with lookup_service(Behaviour(always_fail=True, error_ids={"bad"})) as (url, b):
        transform = make(made, url, retries=0, concurrency=1, failure_ttl=0,
                         circuit_breaker={"failures": 3, "reset_after": 0.2})  # fmt: skip
        outage = transform.apply(clicks("bad", "m1", "m2", "m3", "m4", "m5"))
        assert len(outage.failed) == 6 and transform.breaker.open
        b.always_fail = False  # the service is back; "bad" still fails on its own
        time.sleep(0.4)  # past reset_after
        # the bad id and m1, m2 failed in the outage: the trial is one that did not (m3)
        replay = transform.apply([f.event for f in outage.failed])
        assert [e.data["mysfitId"] for e in replay.events] == ["m1", "m2", "m3", "m4", "m5"]
        (failed,) = replay.failed
        assert failed.error == "lookup of mysfitId=bad failed: the service answered 500 (after 1 attempts)"  # fmt: skip
        assert not transform.breaker.open
        for _ in range(5):  # replayed again and again: the one id fails alone
            assert len(transform.apply([failed.event]).failed) == 1
        assert not transform.breaker.open and b.requests["/mysfits/bad"] == 7

        # half-open with nothing but the bad id: its failure says nothing about the service
        b.always_fail = True
        transform.apply(clicks(*[f"n{i}" for i in range(8)]))
        assert transform.breaker.open
        b.always_fail = False
        time.sleep(0.4)
        (failed,) = transform.apply([failed.event]).failed
        assert "answered 500" in failed.error and transform.breaker.open
        assert transform.breaker.trial_due()  # not opened again for reset_after
        healed = transform.apply(clicks("n7"))
        assert healed.events[0].data["species"] == "species-n7" and not transform.breaker.open


def test_a_4xx_answer_to_the_trial_closes_the_circuit_before_the_batch_goes_on(
    made: list[EnrichHttp],
) -> None:
    with lookup_service(Behaviour(always_fail=True)) as (url, b):
        transform = make(made, url, retries=0, concurrency=4,
                         circuit_breaker={"failures": 2, "reset_after": 0.2})  # fmt: skip
        transform.apply(clicks("x1", "x2", "x3"))
        assert transform.breaker.open
        b.always_fail, b.missing_ids = False, {"gone"}
        time.sleep(0.4)
        result = transform.apply(clicks("gone", *[f"m{i}" for i in range(6)]))
        assert not transform.breaker.open
        assert [e.data["species"] for e in result.events] == [f"species-m{i}" for i in range(6)]
        (failed,) = result.failed
        assert failed.error == "lookup of mysfitId=gone failed: the service answered 404"
        assert b.requests["/mysfits/gone"] == 1  # the trial, then the batch's other ids


class _Collect:
    """A sink that keeps what it is given."""

    capabilities = frozenset({"append"})
    commits_checkpoint = False

    def __init__(self, sink_id: str) -> None:
        self.id = sink_id
        self.events: list[Event] = []

    def open(self) -> None: ...
    def health(self) -> str | None:
        return None

    def maintain(self) -> None: ...
    def close(self) -> None: ...

    def write(self, events: list[Event], checkpoint: state.Checkpoint) -> WriteResult:
        self.events.extend(events)
        return WriteResult()


def _wait(condition: Callable[[], Any]) -> None:
    deadline = time.monotonic() + 20
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition()


def test_dead_letter_replay_drains_a_queue_holding_one_bad_id(data_dir: Path) -> None:
    with lookup_service(Behaviour(always_fail=True, error_ids={"bad"})) as (url, b):
        pipeline = parse_pipeline(f"""
sources: {{src: {{type: http}}}}
transforms:
  mysfit:
    type: enrich_http
    inputs: [src]
    url: "{url}/mysfits/{{mysfitId}}"
    retries: 0
    concurrency: 1
    failure_ttl: 0s
    circuit_breaker: {{failures: 3, reset_after: 200ms}}
sinks:
  out: {{type: lake, inputs: [mysfit]}}
""", env={})  # fmt: skip
        conn = state.connect(data_dir / "state.db")
        state.init_schema(conn)
        events = [{"mysfitId": m} for m in ("bad", "m1", "m2", "m3", "m4", "m5")]
        writer = SegmentWriter(data_dir / "buffer", "w0", segment_bytes=1 << 20, segment_age=3600)
        writer.open()
        writer.append([encode_frame(BufferedRequest(
            time.time_ns() // 1000, new_base_id().to_bytes(16, "big"), "s", "src", len(events),
            FORMAT_ARRAY, msgspec.json.encode(events)))])  # fmt: skip
        writer.close()
        sink = _Collect("out")
        transforms = SinkTransforms(pipeline, "out")
        transforms.open(TransformContext("out", data_dir / "state.db"))
        stop = threading.Event()
        worker = DeliveryWorker(
            sink, ["src"], batch=BatchSettings(max_age=0.05), retry=RetrySettings(),
            buffer=local_buffer(data_dir), state_path=data_dir / "state.db",
            metrics=Registry(), stop=stop, transforms=transforms,
        )  # fmt: skip
        worker.thread.start()
        try:
            _wait(lambda: len(state.list_dead_letters(conn, sink="out")) == 6)
            assert not sink.events  # the outage: every lookup failed or was refused
            b.always_fail = False
            time.sleep(0.4)  # past reset_after, so the replay meets a half-open circuit
            letters = state.list_dead_letters(conn, sink="out")
            fill_buffer(data_dir, dead_letter_requests(letters))
            state.mark_replayed(conn, letters)
            _wait(lambda: len(sink.events) == 5)
            assert sorted(e.data["species"] for e in sink.events) == [
                f"species-m{i}" for i in range(1, 6)
            ]
            _wait(lambda: len(state.list_dead_letters(conn, sink="out")) == 1)
            (letter,) = state.list_dead_letters(conn, sink="out")
            assert letter.attempts == 2 and "mysfitId=bad" in letter.error
            assert "answered 500" in letter.error
        finally:
            stop.set()
            worker.thread.join(10)
            transforms.close()
