"""The ``server:`` limits on a real ``headrace serve`` (``server/http_protocol.py``), over raw
sockets: request-head sizes (414, 431), deadlines for slow heads and bodies (408), the idle
keep-alive timeout and the cap on open connections, each with its metric; normal requests
keep working through all of it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.rawhttp import (
    connect,
    exchange,
    read_answer,
    readable,
    request,
    trickle,
    wait_closed,
)
from support.serverproc import RUNNING, ServerProcess

EVENT = b'{"a": 1}'
DEFAULT_HEADER_BYTES = 32 * 1024
HEAD_TIMEOUTS = 'headrace_http_timeouts_total{phase="head"}'
BODY_TIMEOUTS = 'headrace_http_timeouts_total{phase="body"}'
IDLE_TIMEOUTS = 'headrace_http_timeouts_total{phase="idle"}'
REFUSED = "headrace_http_connections_refused_total"


def start_server(path: Path, server_section: dict[str, object] | None = None) -> ServerProcess:
    """One ingest worker (so a connection cap is one number) with ``server_section``, kept
    for the whole module: taken out of the per-test cleanup list, stopped by the fixture."""
    pipeline: dict[str, object] = {
        "sources": {"web": {"type": "http"}},
        "sinks": {"lake": {"type": "lake", "inputs": ["web"]}},
    }
    if server_section is not None:
        pipeline["server"] = server_section
    path.mkdir()
    config = path / "pipeline.yaml"
    config.write_text(json.dumps(pipeline))
    server = ServerProcess(path / "data", config=config, workers=1).start()
    RUNNING.remove(server)
    return server


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the default limits."""
    server = start_server(tmp_path_factory.mktemp("defaults") / "srv")
    try:
        yield server
    finally:
        server.stop()


TIGHT = {
    "head_timeout": "1500ms",
    "min_body_rate": 100,
    "body_grace": "1s",
    "keepalive_timeout": "1s",
    "max_connections": 6,
}


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with short deadlines and few connections, so slow clients meet them fast."""
    server = start_server(tmp_path_factory.mktemp("tight") / "srv", TIGHT)
    try:
        yield server
    finally:
        server.stop()


def post_ok(server: ServerProcess) -> None:
    """A normal request still gets in (retried briefly: a slot may be closing)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = httpx.post(f"{server.url}/v1/streams/web/events", json={"ok": 1}, timeout=5)
            if answer.status_code == 202:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "normal requests are refused"
        time.sleep(0.1)


def header_bytes(headers: list[tuple[str, str]]) -> int:
    """The headers' size as the limit counts it: each as ``Name: value\\r\\n``."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


def sized_headers(total: int) -> list[tuple[str, str]]:
    """Headers (with ``Host`` and ``Content-Length`` for ``EVENT``) of exactly ``total`` bytes."""
    fixed = [("Host", "127.0.0.1"), ("Content-Length", str(len(EVENT)))]
    pad = total - header_bytes(fixed) - header_bytes([("X-Pad", "")])
    return [("X-Pad", "p" * pad)]


# -- the request head ---------------------------------------------------------------------------


def test_header_count_over_the_limit_answers_431(defaults: ServerProcess) -> None:
    at_limit = [(f"X-H{i}", "1") for i in range(98)]  # + Host + Content-Length = 100
    assert exchange(defaults.port, request(headers=at_limit, body=EVENT)).status == 202
    over = exchange(defaults.port, request(headers=[*at_limit, ("X-One-More", "1")], body=EVENT))
    assert over.status == 431
    assert over.json()["error"] == "headers_too_large"
    assert over.json()["limit"] == "max_headers"
    assert over.headers["connection"] == "close"
    flood = exchange(defaults.port, request(headers=[(f"X-{i}", "v") for i in range(10_000)]))
    assert flood.status == 431
    post_ok(defaults)


def test_header_bytes_at_the_limit_pass_and_one_more_is_431(defaults: ServerProcess) -> None:
    exact = sized_headers(DEFAULT_HEADER_BYTES)
    fixed = [("Host", "127.0.0.1"), ("Content-Length", str(len(EVENT)))]
    assert header_bytes([*fixed, *exact]) == DEFAULT_HEADER_BYTES
    assert exchange(defaults.port, request(headers=exact, body=EVENT)).status == 202
    over = sized_headers(DEFAULT_HEADER_BYTES + 1)
    answer = exchange(defaults.port, request(headers=over, body=EVENT))
    assert (answer.status, answer.json()["limit"]) == (431, "max_header_bytes")
    assert answer.json()["max"] == DEFAULT_HEADER_BYTES
    post_ok(defaults)


def test_a_long_url_answers_414(defaults: ServerProcess) -> None:
    base = "/v1/streams/web/events?pad="
    exact = base + "x" * (8 * 1024 - len(base))
    assert exchange(defaults.port, request(exact, body=EVENT)).status == 202
    answer = exchange(defaults.port, request(exact + "x", body=EVENT))
    assert (answer.status, answer.json()["error"]) == (414, "uri_too_long")
    assert answer.json()["limit"] == "max_url_bytes"
    post_ok(defaults)


def _peak_rss_kib(pids: list[int]) -> dict[int, int]:
    peaks = {}
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[pid] = int(line.split()[1])
    return peaks


def test_a_16_mib_header_is_refused_before_it_is_held(defaults: ServerProcess) -> None:
    post_ok(defaults)
    before = _peak_rss_kib(defaults.children())
    piece = b"a" * 65536
    sent = 0
    answer = None
    with connect(defaults.port) as sock:
        sock.sendall(b"POST /v1/streams/web/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        while sent < 16 * 1024**2:
            if readable(sock, 0.02):
                answer = read_answer(sock)
                break
            try:
                sock.sendall(piece)
            except OSError:  # closed after answering: the answer is waiting
                break
            sent += len(piece)
        if answer is None:
            answer = read_answer(sock)
    assert answer is not None and answer.status == 431, answer
    assert sent < 16 * 1024**2, "the server read the whole 16 MiB header before answering"
    after = _peak_rss_kib(defaults.children())
    grown = {pid: after[pid] - before.get(pid, 0) for pid in after}
    assert max(grown.values()) < 8 * 1024, f"peak RSS grew (KiB): {grown}"
    post_ok(defaults)


def counted(server: ServerProcess, sample: str) -> float:
    """A sample of the server's ``/metrics`` (0 while it has none)."""
    return server.metrics().get(sample, 0.0)


def test_header_limits_are_counted(defaults: ServerProcess) -> None:
    samples = [f'headrace_http_header_limit_total{{limit="{limit}"}}'
               for limit in ("max_headers", "max_url_bytes", "max_header_bytes")]  # fmt: skip
    before = [counted(defaults, sample) for sample in samples]
    exchange(defaults.port, request(headers=[(f"X-{i}", "v") for i in range(200)]))
    exchange(defaults.port, request("/" + "u" * 9000))
    exchange(defaults.port, request(headers=sized_headers(DEFAULT_HEADER_BYTES + 10)))
    after = [counted(defaults, sample) for sample in samples]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]


# -- slow clients ---------------------------------------------------------------------------------


def test_a_head_sent_a_byte_at_a_time_is_closed_at_its_deadline(tight: ServerProcess) -> None:
    before = counted(tight, HEAD_TIMEOUTS)
    with connect(tight.port) as sock:
        slow = trickle(sock, request(body=EVENT), interval=0.3, give_up=15)
        post_ok(tight)  # the slow one holds nothing others need
    assert slow.answer is not None and slow.answer.status == 408, slow
    assert slow.answer.json()["error"] == "request_timeout"
    assert slow.closed_after is not None and 1.0 < slow.closed_after < 10, slow
    assert counted(tight, HEAD_TIMEOUTS) == before + 1


def test_a_connection_that_never_sends_is_closed(tight: ServerProcess) -> None:
    with connect(tight.port) as sock:
        started = time.monotonic()
        answer = read_answer(sock, 15)
        assert wait_closed(sock, 10)
    assert answer is not None and answer.status == 408
    assert time.monotonic() - started < 10


def test_a_body_slower_than_the_minimum_rate_is_closed(tight: ServerProcess) -> None:
    before = counted(tight, BODY_TIMEOUTS)
    body = b"[" + b" " * 998 + b"]"
    with connect(tight.port) as sock:
        sock.sendall(request(body=body)[: -len(body)])  # the head at once, then a byte at a time
        slow = trickle(sock, body, interval=0.25, give_up=15)
    assert slow.answer is not None and slow.answer.status == 408, slow
    assert slow.closed_after is not None and slow.closed_after < 10
    assert slow.sent < len(body)
    assert counted(tight, BODY_TIMEOUTS) == before + 1
    post_ok(tight)


def test_a_slow_body_that_keeps_the_minimum_rate_is_accepted(tight: ServerProcess) -> None:
    body = b'[{"slow": true}' + b" " * 484 + b"]"  # 500 bytes at 200/s: twice the minimum
    with connect(tight.port) as sock:
        sock.sendall(request(body=body)[: -len(body)])
        for start in range(0, len(body), 50):
            time.sleep(0.25)
            sock.sendall(body[start : start + 50])
        answer = read_answer(sock)
    assert answer is not None and answer.status == 202, answer


def test_an_idle_keepalive_connection_is_closed(tight: ServerProcess) -> None:
    before = counted(tight, IDLE_TIMEOUTS)
    with connect(tight.port) as sock:
        sock.sendall(request(body=EVENT))
        answer = read_answer(sock)
        assert answer is not None and answer.status == 202
        started = time.monotonic()
        assert wait_closed(sock, 10)
        assert time.monotonic() - started < 4  # keepalive_timeout 1s; uvicorn's own is 5s
    assert counted(tight, IDLE_TIMEOUTS) >= before + 1  # (/metrics' own connections idle too)


def test_connections_past_the_cap_are_answered_503_and_closed(tight: ServerProcess) -> None:
    before = counted(tight, REFUSED)
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 10
        while len(held) < TIGHT["max_connections"]:  # type: ignore[operator]
            sock = connect(tight.port)
            if readable(sock, 0.05):  # a slot still closing from an earlier test
                sock.close()
                assert time.monotonic() < deadline
                time.sleep(0.1)
                continue
            held.append(sock)
            if len(held) == 3:  # the gauge: these, and the one asking
                assert counted(tight, "headrace_http_connections") >= 4
        with connect(tight.port) as extra:
            answer = read_answer(extra, 5)
            assert answer is not None and answer.status == 503, answer
            assert answer.json()["error"] == "too_many_connections"
            assert wait_closed(extra, 5)
    finally:
        for sock in held:
            sock.close()
    post_ok(tight)
    assert counted(tight, REFUSED) == before + 1
