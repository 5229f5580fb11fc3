"""Suite item 4, sink outage: PostgreSQL reached through the fault-injecting TCP proxy
(``support.tcpproxy``) while clients POST at a steady pace. Each fault (delay, blackhole, reset,
close after N bytes) holds for a while, then heals. Ingest never answers anything but 2xx (the
buffer has room: PostgreSQL is not on the ingest path), nothing acknowledged is lost, no key
gets two rows, and the backlog the fault built drains after healing (the time is recorded).
Over the local buffer and NATS JetStream.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reliability.conftest import Scale
from reliability.ledger import (
    Clients,
    Ledger,
    nats_buffer,
    orders_pipeline,
    pg_counts,
    pg_duplicate_ids,
    tally,
    wait_stored,
)
from support.natsserver import nats_server
from support.pgschema import HOST, PORT, dsn_via, throwaway_schema
from support.serverproc import ServerProcess, kill_leftovers
from support.tcpproxy import TcpProxy

CLOSE_AFTER_BYTES = 4096
"""Enough for a connection's start-up and a few queries, not for a batch's COPY."""
DELAY_SECONDS = 0.3
FAULTS: dict[str, Callable[[TcpProxy], None]] = {
    "delay": lambda proxy: proxy.delay(DELAY_SECONDS),
    "blackhole": TcpProxy.blackhole,
    "reset": TcpProxy.reset,
    "close after N bytes": lambda proxy: proxy.close_after(CLOSE_AFTER_BYTES),
}
STALLING = ("blackhole", "reset", "close after N bytes")
"""The faults under which nothing can be delivered, so a backlog must build."""
DRAIN_DEADLINE = 120.0


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.mark.parametrize("buffer", ["local", "nats"])
def test_sink_outage(
    tmp_path: Path, buffer: str, scale: Scale, record: Callable[..., object]
) -> None:
    hold = scale.pick(2.0, 15.0)
    with contextlib.ExitStack() as stack:
        schema = stack.enter_context(throwaway_schema("Outage"))
        proxy = stack.enter_context(TcpProxy((HOST, PORT)))
        nats = (
            nats_buffer(stack.enter_context(nats_server(tmp_path / "nats")).url, "HROUTAGE")
            if buffer == "nats"
            else ""
        )
        config = tmp_path / "pipeline.yaml"
        config.write_text(orders_pipeline(
            schema, dsn=dsn_via(proxy.port), buffer=nats, sink_keys="connect_timeout: 3s",
            batch="{max_age: 200ms, max_events: 500}",
        ))  # fmt: skip
        server = ServerProcess(tmp_path / "data", config=config, workers=2).start(timeout=60)
        server.wait_ready(timeout=60)
        ledger = Ledger()

        def stored() -> Counter[str]:
            return pg_counts(schema, "orders")

        backlogs: dict[str, int] = {}
        drains: dict[str, float] = {}
        url = f"{server.url}/v1/streams/orders/events"
        with Clients(url, ledger, count=4, batch=5, pace=0.02):
            for name, inject in FAULTS.items():
                time.sleep(1.0)  # steady state first
                inject(proxy)
                time.sleep(hold)
                before = ledger.snapshot()
                backlogs[name] = len(before - stored().keys())
                proxy.heal()
                _, drains[name] = wait_stored(stored, before, DRAIN_DEADLINE)
        final, _ = wait_stored(stored, ledger.acknowledged, DRAIN_DEADLINE)
        exit_status = server.stop()
        figures = tally(ledger, pg_counts(schema, "orders"))
        duplicate_ids = pg_duplicate_ids(schema, "orders")

    record(
        load=f"4 steady clients, {len(ledger.attempted):,} events, {buffer} buffer",
        faults=", ".join(f"{name} {hold:g}s" for name in FAULTS),
        acknowledged=figures.acknowledged,
        stored=figures.stored,
        lost=figures.lost,
        duplicates=figures.duplicates + duplicate_ids,
        unexpected=figures.unexpected,
        ingest_errors=ledger.failures(),
        backlog_at_heal=backlogs,
        drain_seconds={name: round(s, 1) for name, s in drains.items()},
        answers=dict(ledger.answers),
    )
    assert ledger.failures() == 0, f"ingest refused while the buffer had room: {ledger.answers}"
    assert figures.lost == 0, f"lost {figures.lost}, e.g. {figures.lost_keys}"
    assert figures.unexpected == 0, figures.unexpected_keys
    assert figures.duplicates == 0 and duplicate_ids == 0, figures.duplicate_keys
    for name in STALLING:  # the fault really held delivery back
        assert backlogs[name] > 0, f"{name} built no backlog: {backlogs}"
    assert all(seconds < DRAIN_DEADLINE for seconds in drains.values()), drains
    assert final.keys() >= ledger.acknowledged
    assert exit_status == 0, server.log()[-3000:]


# -- the proxy's faults do what they are named for ---------------------------------------------


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A TCP server that sends back whatever it receives."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()
    listener.close()


def _client(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.settimeout(2)
    return sock


def _round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_proxy_delay_holds_each_chunk(echo: tuple[str, int]) -> None:
    with TcpProxy(echo) as proxy, _client(proxy) as sock:
        assert _round_trip(sock, b"ping") == b"ping"
        proxy.delay(0.25)
        started = time.monotonic()
        assert _round_trip(sock, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.5  # both ways
        proxy.heal()
        started = time.monotonic()
        assert _round_trip(sock, b"fast") == b"fast"
        assert time.monotonic() - started < 0.25


def test_proxy_blackhole_holds_bytes_until_healed(echo: tuple[str, int]) -> None:
    with TcpProxy(echo) as proxy, _client(proxy) as old:
        assert _round_trip(old, b"before") == b"before"
        proxy.blackhole()
        new = _client(proxy)  # accepted, and then nothing
        old.settimeout(0.3)
        new.settimeout(0.3)
        old.sendall(b"held")
        new.sendall(b"also")
        for sock in (old, new):
            with pytest.raises(TimeoutError):
                sock.recv(10)
        proxy.heal()
        old.settimeout(2)
        new.settimeout(2)
        assert old.recv(10) == b"held"
        assert new.recv(10) == b"also"
        new.close()


def test_proxy_reset_breaks_open_and_new_connections(echo: tuple[str, int]) -> None:
    with TcpProxy(echo) as proxy, _client(proxy) as old:
        assert _round_trip(old, b"x") == b"x"
        proxy.reset()
        with pytest.raises(OSError):
            old.sendall(b"y")
            if not old.recv(10):
                raise ConnectionResetError  # closed rather than reset: just as gone
        with pytest.raises(OSError), _client(proxy) as new:  # the connect itself may fail
            new.sendall(b"z")
            if not new.recv(10):
                raise ConnectionResetError
        proxy.heal()
        with _client(proxy) as again:
            assert _round_trip(again, b"back") == b"back"


def test_proxy_close_after_n_bytes_cuts_mid_stream(echo: tuple[str, int]) -> None:
    with TcpProxy(echo) as proxy, _client(proxy) as old:
        proxy.close_after(100)  # both ways together: 50 out and 50 back
        assert _round_trip(old, b"a" * 40) == b"a" * 40  # 80 of the 100 bytes
        got = b""
        with contextlib.suppress(OSError):  # reset, or closed
            old.sendall(b"b" * 200)
            while chunk := old.recv(1000):
                got += chunk
        assert len(got) <= 20  # at most what was left, and then the connection ended
        proxy.heal()
        with _client(proxy) as new:
            assert _round_trip(new, b"c" * 500) == b"c" * 500
