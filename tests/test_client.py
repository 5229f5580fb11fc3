"""``headrace.client`` against a real ``headrace serve``: batching, retries, nothing lost on close.

A 503 is hard to provoke on a healthy server, so the retry tests put a small proxy in front of
it that answers 503 (or 429) to the first few requests and forwards the rest unchanged.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from headrace.client import AsyncClient, Client, ClientSettings, encode, parse_retry_after
from support.serverproc import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", workers=1).start()
    proc.wait_ready()
    yield proc
    proc.stop()


class FaultProxy:
    """Answers ``status`` (with Retry-After) to the first ``failures`` requests, then forwards."""

    def __init__(
        self, upstream: str, failures: int, status: int = 503, retry_after: str = "0"
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                proxy.requests.append(
                    {"headers": dict(self.headers), "body": body, "at": time.monotonic()}
                )
                if len(proxy.requests) <= failures:
                    self.send_response(status)
                    self.send_header("retry-after", retry_after)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = httpx.post(upstream + self.path, content=body, headers=headers)
                self.send_response(answer.status_code)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def count(server: ServerProcess, stream: str, expected: int) -> int:
    """Events stored in ``stream`` once ``expected`` have arrived (or 30 s have passed)."""
    deadline = time.monotonic() + 30
    while True:
        found = httpx.get(f"{server.url}/api/dashboard/streams/{stream}/counts", timeout=10).json()
        if found.get("total", 0) >= expected or time.monotonic() > deadline:
            return int(found.get("total", 0))
        time.sleep(0.1)


def test_batches_and_gzip(server: ServerProcess) -> None:
    proxy = FaultProxy(server.url, failures=0)
    try:
        with Client(proxy.url, "batched", batch_size=100, flush_interval=30) as client:
            for i in range(250):
                client.track({"n": i, "pad": "x" * 20})
            assert client.flush(timeout=30)
            assert client.sent == 250
        sizes = [len(gzip.decompress(r["body"]).split(b'"n"')) - 1 for r in proxy.requests]
        assert sizes == [100, 100, 50]  # two full batches at once, the rest on flush()
        assert all(r["headers"]["content-encoding"] == "gzip" for r in proxy.requests)
        assert count(server, "batched", 250) == 250
    finally:
        proxy.close()


def test_retries_on_503_and_429_honouring_retry_after(server: ServerProcess) -> None:
    for status in (503, 429):
        proxy = FaultProxy(server.url, failures=2, status=status, retry_after="1")
        try:
            client = Client(proxy.url, f"retried{status}", batch_size=10, initial_backoff=0.01)
            for i in range(10):
                client.track({"n": i})
            assert client.flush(timeout=30)
            client.close()
            assert (client.sent, client.failed) == (10, 0)
            assert len(proxy.requests) == 3
            # the server's Retry-After (1 s), not the client's own 10 ms backoff
            gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(proxy.requests)]
            assert min(gaps) >= 0.9, gaps
            assert count(server, f"retried{status}", 10) == 10
        finally:
            proxy.close()


def test_gives_up_on_a_refusal_without_retrying(server: ServerProcess) -> None:
    proxy = FaultProxy(server.url, failures=5, status=400)
    try:
        with Client(proxy.url, "refused", batch_size=5) as client:
            for i in range(5):
                client.track({"n": i})
            client.flush(timeout=30)
            assert (client.sent, client.failed) == (0, 5)
        assert len(proxy.requests) == 1
    finally:
        proxy.close()


def test_close_loses_nothing(server: ServerProcess) -> None:
    client = Client(server.url, "closing", batch_size=500, flush_interval=3600)
    for i in range(1234):
        client.track({"n": i})
    client.close()  # no flush interval has passed: close() sends it all
    assert client.sent == 1234
    assert count(server, "closing", 1234) == 1234
    with pytest.raises(RuntimeError):
        client.track({"late": True})


def test_bounded_queue_drops_and_counts(server: ServerProcess) -> None:
    proxy = FaultProxy(server.url, failures=1000, status=503, retry_after="30")
    client = Client(proxy.url, "full", max_queue=10, batch_size=5, close_timeout=0.5)
    try:
        kept = [client.track({"n": i}) for i in range(30)]
        assert kept.count(False) == client.dropped and client.dropped >= 10
    finally:
        client.close()
        proxy.close()


def test_async_client(server: ServerProcess) -> None:
    proxy = FaultProxy(server.url, failures=1, status=503)

    async def run() -> AsyncClient:
        async with AsyncClient(proxy.url, "async", batch_size=50, initial_backoff=0.01) as client:
            for i in range(120):
                client.track({"n": i})
            await client.flush()
            assert client.sent == 120
            for i in range(7):
                client.track({"n": i})
        return client

    try:
        client = asyncio.run(run())
        assert (client.sent, client.failed) == (127, 0)
        assert count(server, "async", 127) == 127
    finally:
        proxy.close()


def test_retry_after_and_backoff() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    settings = ClientSettings("http://x", "s", initial_backoff=1, max_backoff=4)
    assert settings.backoff(1, "2") == 2.0 and settings.backoff(1, "999") == 4.0
    assert 0.5 <= settings.backoff(1, None) <= 1 and 2 <= settings.backoff(5, None) <= 4


def test_small_batches_are_not_compressed(tmp_path: Path) -> None:
    settings = ClientSettings("http://x/", "a b", token="t")
    body, headers = settings.request([encode({"n": 1})])
    assert body == b'[{"n":1}]' and "content-encoding" not in headers
    assert headers["authorization"] == "Bearer t"
    assert settings.url == "http://x/v1/streams/a%20b/events"


def test_an_event_that_cannot_be_encoded_fails_in_track(server: ServerProcess) -> None:
    with Client(server.url, "unencodable", batch_size=2, flush_interval=0.1) as client:
        with pytest.raises(TypeError, match="JSON"):
            client.track({"obj": object()})
        with pytest.raises(TypeError):
            client.track(["not", "a", "dict"])  # type: ignore[arg-type]
        for i in range(3):
            assert client.track({"n": i})
        assert client.flush(timeout=10)  # the sender is alive and sent the rest
        assert (client.sent, client.failed) == (3, 0)
    assert count(server, "unencodable", 3) == 3


class Exploding(ClientSettings):
    """Settings whose first batch blows up while being built (an unexpected error)."""

    calls = 0

    def request(self, events: list[bytes]) -> tuple[bytes, dict[str, str]]:
        Exploding.calls += 1
        if Exploding.calls == 1:
            raise RuntimeError("boom")
        return super().request(events)


def test_an_unexpected_error_costs_one_batch_not_the_sender(server: ServerProcess) -> None:
    Exploding.calls = 0
    client = Client(server.url, "exploding", batch_size=5, flush_interval=0.1)
    client.settings = Exploding(server.url, "exploding", batch_size=5, flush_interval=0.1)
    for i in range(5):
        client.track({"n": i})
    assert client.flush(timeout=10)
    for i in range(5, 12):
        client.track({"n": i})
    assert client.flush(timeout=10)
    client.close()
    assert (client.sent, client.failed) == (7, 5)
    assert count(server, "exploding", 7) == 7

    async def run() -> AsyncClient:
        Exploding.calls = 0
        client = AsyncClient(server.url, "exploding-async", batch_size=5, flush_interval=0.1)
        client.settings = Exploding(server.url, "exploding-async", batch_size=5)
        for i in range(5):
            client.track({"n": i})
        assert await client.flush(timeout=10)
        for i in range(5, 8):
            client.track({"n": i})
        assert await client.flush(timeout=10)
        await client.close()
        return client

    done = asyncio.run(run())
    assert (done.sent, done.failed) == (3, 5)


def test_retry_after_in_non_ascii_digits_is_ignored(server: ServerProcess) -> None:
    assert parse_retry_after("\u00b2") is None and parse_retry_after("\u0663") is None
    proxy = FaultProxy(server.url, failures=1, status=503, retry_after="\u00b2")
    try:
        with Client(proxy.url, "superscript", batch_size=4, initial_backoff=0.01) as client:
            for i in range(4):
                client.track({"n": i})
            assert client.flush(timeout=10)
            assert (client.sent, client.failed) == (4, 0)
        assert len(proxy.requests) == 2
    finally:
        proxy.close()


def test_async_flush_gives_up_after_its_timeout(server: ServerProcess) -> None:
    proxy = FaultProxy(server.url, failures=1000, status=503, retry_after="30")

    async def run() -> tuple[bool, float]:
        client = AsyncClient(proxy.url, "stuck", batch_size=1, close_timeout=0.5)
        client.track({"n": 1})
        started = time.monotonic()
        flushed = await client.flush(timeout=0.5)
        waited = time.monotonic() - started
        await client.close()
        return flushed, waited

    try:
        flushed, waited = asyncio.run(run())
        assert not flushed and waited < 5
    finally:
        proxy.close()


def test_a_client_made_before_fork_sends_from_the_child(server: ServerProcess) -> None:
    # a web app under gunicorn --preload: the module-level client is made in the master
    client = Client(server.url, "forked", batch_size=100, flush_interval=0.1, close_timeout=5)
    client.track({"who": "parent"})
    assert client.flush(timeout=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:  # the child: only os._exit, so pytest's own state is never touched
        code = 1
        try:
            for i in range(3):
                client.track({"who": "child", "n": i})
            code = 0 if client.flush(timeout=10) and client.sent == 3 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.track({"who": "parent again"})
    client.close()
    assert client.sent == 2
    assert count(server, "forked", 5) == 5
