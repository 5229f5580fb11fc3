"""enrich_http against a real HTTP service that is slow, fails and errors part of the time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from enrichservice import Behaviour, lookup_service
from headrace.config.transform_models import EnrichHttpTransform
from headrace.transforms import TransformContext
from headrace.transforms.enrich import EnrichHttp
from headrace.types import Event


@pytest.fixture
def made() -> Iterator[list[EnrichHttp]]:
    out: list[EnrichHttp] = []
    yield out
    for transform in out:
        transform.close()


def make(made: list[EnrichHttp], url: str, **kw: Any) -> EnrichHttp:
    config = EnrichHttpTransform.model_validate(
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
        EnrichHttpTransform.model_validate(
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
