"""Suite item 7, hostile HTTP: a real ``headrace serve`` attacked while normal clients POST.

- payloads: every request limit at its value and one byte past it (body, decompressed body,
  header bytes, URL, header count, depth), gzip bombs, huge numbers, bad UTF-8, header floods
  (10,000 headers, a 16 MiB header). Each is answered its specific 4xx (or accepted, at the
  limit), what was accepted is stored once, what was refused is not stored at all;
- slowloris: slow connections trickling a head or a body one byte a second; every one is
  closed by its deadline (``server.head_timeout``, ``server.min_body_rate``);
- a connection flood past ``server.max_connections``: the extra connections are answered 503
  and closed at once, the admitted ones closed by the head deadline.

Throughout, normal clients keep POSTing: none of their requests fails, their p99 stays under
1 s, and everything they were acknowledged is stored in PostgreSQL exactly once. One row per
attack; over the local buffer and NATS JetStream.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import selectors
import socket
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
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
from server.rawhttp import Answer, connect, exchange, read_answer, readable, request
from support.natsserver import nats_server
from support.pgschema import throwaway_schema
from support.serverproc import ServerProcess, kill_leftovers

MAX_BODY = 64 * 1024
MAX_INFLATED = 256 * 1024
MAX_DEPTH = 16
HEADER_BYTES = 32 * 1024  # server.max_header_bytes' default
URL_BYTES = 8 * 1024  # server.max_url_bytes' default
HEAD_TIMEOUT = 10.0  # server.head_timeout's default
BODY_GRACE = 10.0  # server.body_grace's default (min_body_rate: 240 bytes/s)
P99_LIMIT = 1.0
PATH = "/v1/streams/orders/events"


class TimedClients(Clients):
    """Normal clients that also keep how long each answer took."""

    def __init__(self, url: str, ledger: Ledger, **options: Any) -> None:
        super().__init__(url, ledger, **options)
        self.latencies: list[float] = []

    def _post(self, client: httpx.Client, keys: list[str]) -> int | str:
        started = time.monotonic()
        status = super()._post(client, keys)
        self.latencies.append(time.monotonic() - started)
        return status

    def p99(self, since: int = 0) -> float:
        taken = sorted(self.latencies[since:])
        return taken[int(len(taken) * 0.99)] if taken else 0.0


@dataclass
class Hostile:
    """A server under attack, its PostgreSQL table and the normal clients' ledger."""

    server: ServerProcess
    schema: str
    buffer: str
    ledger: Ledger = field(default_factory=Ledger)

    def stored(self) -> Counter[str]:
        return pg_counts(self.schema, "orders")

    def clients(self, count: int = 4) -> TimedClients:
        return TimedClients(f"{self.server.url}{PATH}", self.ledger, count=count, pace=0.02)


@pytest.fixture(params=["local", "nats"])
def hostile(request: pytest.FixtureRequest, tmp_path: Path, scale: Scale) -> Iterator[Hostile]:
    buffer = str(request.param)
    with contextlib.ExitStack() as stack:
        schema = stack.enter_context(throwaway_schema("Hostile"))
        nats = ""
        if buffer == "nats":
            nats = nats_buffer(stack.enter_context(nats_server(tmp_path / "nats")).url, "HRHOSTILE")
        config = tmp_path / "pipeline.yaml"
        limits = (
            f"limits: {{max_body_bytes: {MAX_BODY}, max_decompressed_bytes: {MAX_INFLATED}, "
            f"max_depth: {MAX_DEPTH}}}\nserver: {{max_connections: {scale.pick(100, 1000)}}}\n"
        )
        config.write_text(orders_pipeline(schema, buffer=nats, more=limits))
        server = ServerProcess(tmp_path / "data", config=config, workers=2).start(timeout=60)
        server.wait_ready(timeout=60)
        try:
            yield Hostile(server, schema, buffer)
        finally:
            kill_leftovers()


def settle(hostile: Hostile, keys: set[str]) -> tuple[Counter[str], int]:
    """Wait for ``keys`` at PostgreSQL; what it holds, and event ids stored twice."""
    stored, _ = wait_stored(hostile.stored, keys, 60)
    return stored, pg_duplicate_ids(hostile.schema, "orders")


# -- payloads and heads ----------------------------------------------------------------------------


def padded(key: str, size: int) -> bytes:
    """One event ``{"k": key}`` padded with whitespace to exactly ``size`` bytes."""
    core = json.dumps([{"k": key}]).encode()
    return core[:-1] + b" " * (size - len(core)) + b"]"


def deep(key: str, depth: int) -> bytes:
    inner: object = 1
    for _ in range(depth - 1):
        inner = {"n": inner}
    return json.dumps({"k": key, "n": inner}).encode()


def gzipped(key: str, inflated: int) -> bytes:
    return gzip.compress(padded(key, inflated))


def zeros_bomb(total: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024**2)
    return b"".join(compressor.compress(chunk) for _ in range(total // len(chunk))) + \
        compressor.flush()  # fmt: skip


def header_pad(total: int, body: bytes) -> list[tuple[str, str]]:
    """Extra headers so that Host, Content-Length and these are exactly ``total`` bytes."""
    fixed = len("Host") + len("127.0.0.1") + 4 + len("Content-Length") + len(str(len(body))) + 4
    return [("X-Pad", "p" * (total - fixed - len("X-Pad") - 4))]


@dataclass(frozen=True)
class Attack:
    """A hostile request: what it sends, what it must be answered, the key it carries if any."""

    name: str
    raw: Callable[[str], bytes]
    status: int
    reason: str | None = None


def _post(body: bytes, headers: list[tuple[str, str]] | None = None, target: str = PATH) -> bytes:
    return request(target, headers=headers, body=body)


BOMB = zeros_bomb(32 * 1024**2)  # about 32 KiB sent: under max_body_bytes
ATTACKS = [
    Attack("body at max_body_bytes", lambda k: _post(padded(k, MAX_BODY)), 202),
    Attack("body 1 byte over", lambda k: _post(padded(k, MAX_BODY + 1)), 413, "body_too_large"),
    Attack("gzip inflating to the cap", lambda k: _post(gzipped(k, MAX_INFLATED)), 202),
    Attack(
        "gzip inflating 1 byte over",
        lambda k: _post(gzipped(k, MAX_INFLATED + 1)),
        413,
        "decompressed_too_large",
    ),
    Attack("gzip bomb (32 MiB of zeros)", lambda k: _post(BOMB), 413, "decompressed_too_large"),
    Attack("depth at max_depth", lambda k: _post(deep(k, MAX_DEPTH)), 202),
    Attack("depth 1 over", lambda k: _post(deep(k, MAX_DEPTH + 1)), 400, "too_deep"),
    Attack(
        "uint64 max", lambda k: _post(b'{"k": "%s", "n": 18446744073709551615}' % k.encode()), 202
    ),
    Attack(
        "integer past 64 bits",
        lambda k: _post(b'{"k": "%s", "n": %d}' % (k.encode(), 2**64)),
        400,
        "number_out_of_range",
    ),
    Attack(
        "float past double",
        lambda k: _post(b'{"k": "%s", "n": 1e309}' % k.encode()),
        400,
        "number_out_of_range",
    ),
    Attack(
        "bad UTF-8",
        lambda k: _post(b'{"k": "%s", "s": "\xff\xfe"}' % k.encode()),
        400,
        "invalid_json",
    ),
    Attack(
        "header bytes at the limit",
        lambda k: _post(b := padded(k, 64), header_pad(HEADER_BYTES, b)),
        202,
    ),
    Attack(
        "header bytes 1 over",
        lambda k: _post(b := padded(k, 64), header_pad(HEADER_BYTES + 1, b)),
        431,
        "headers_too_large",
    ),
    Attack(
        "10,000 headers",
        lambda k: _post(padded(k, 64), [(f"X-{i}", "v") for i in range(10_000)]),
        431,
        "headers_too_large",
    ),
    Attack("URL at the limit", lambda k: _post(padded(k, 64), target=_url(URL_BYTES)), 202),
    Attack(
        "URL 1 byte over",
        lambda k: _post(padded(k, 64), target=_url(URL_BYTES + 1)),
        414,
        "uri_too_long",
    ),
]


def _url(size: int) -> str:
    base = PATH + "?pad="
    return base + "x" * (size - len(base))


def send_16_mib_header(port: int) -> tuple[Answer | None, int]:
    """A POST whose one header is 16 MiB, sent until the server answers; (answer, bytes sent)."""
    sent = 0
    piece = b"a" * 65536
    with connect(port) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".encode())
        while sent < 16 * 1024**2 and not readable(sock, 0.01):
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(piece)
        return read_answer(sock), sent


def test_hostile_payloads_and_heads(hostile: Hostile, record: Callable[..., object]) -> None:
    port = hostile.server.port
    outcomes: dict[str, str] = {}
    accepted: set[str] = set()
    refused: set[str] = set()
    with hostile.clients() as clients:
        time.sleep(0.5)
        for n, attack in enumerate(ATTACKS):
            key = f"attack-{n}"
            answer = exchange(port, attack.raw(key), timeout=30)
            reason = answer.json().get("error") if answer.status >= 400 else None
            outcomes[attack.name] = f"{answer.status} {reason or ''}".strip()
            ok = answer.status == attack.status and reason == attack.reason
            assert ok, f"{attack.name}: {answer.status} {answer.body[:200]!r}"
            (accepted if answer.status < 300 else refused).add(key)
        big, sent = send_16_mib_header(port)
        outcomes["16 MiB header"] = f"{big.status if big else 'closed'} after {sent:,} bytes sent"
    stored, duplicate_ids = settle(hostile, hostile.ledger.acknowledged | accepted)
    figures = tally(hostile.ledger, Counter({k: v for k, v in stored.items()
                                              if not k.startswith("attack-")}))  # fmt: skip
    record(
        load=f"4 normal clients, {len(hostile.ledger.attempted):,} events, {hostile.buffer} buffer",
        faults=f"{len(ATTACKS) + 1} hostile requests: limits ±1 byte, gzip bomb, depth, numbers, "
        "bad UTF-8, 10,000 headers, a 16 MiB header",
        acknowledged=figures.acknowledged, stored=figures.stored, lost=figures.lost,
        duplicates=figures.duplicates + duplicate_ids, p99_ms=round(clients.p99() * 1000, 1),
        normal_failures=hostile.ledger.failures(), outcomes=outcomes,
    )  # fmt: skip
    assert big is not None and big.status == 431 and sent < 16 * 1024**2, outcomes
    assert hostile.ledger.failures() == 0, hostile.ledger.answers
    assert clients.p99() < P99_LIMIT
    assert figures.lost == 0 and figures.unexpected == 0, (
        figures.lost_keys,
        figures.unexpected_keys,
    )
    assert figures.duplicates == 0 and duplicate_ids == 0
    assert all(stored[k] == 1 for k in accepted), {k: stored[k] for k in accepted}
    assert not any(stored[k] for k in refused), {k: stored[k] for k in refused}


# -- slow connections ------------------------------------------------------------------------------


class SlowConnections:
    """``count`` connections, each sending ``data(i)`` one byte a second (the first
    ``burst(i)`` bytes at once), watched for the moment the server closes them."""

    def __init__(self, port: int, count: int, data: Callable[[int], bytes],
                 burst: Callable[[int], int]) -> None:  # fmt: skip
        self.selector = selectors.DefaultSelector()
        self.opened: dict[int, float] = {}
        self.closed: dict[int, float] = {}
        self.statuses: Counter[str] = Counter()
        self.sockets: dict[int, socket.socket] = {}
        self.data = {i: data(i) for i in range(count)}
        self.sent = {i: burst(i) for i in range(count)}
        for i in range(count):
            sock = connect(port)
            sock.sendall(self.data[i][: self.sent[i]])
            sock.setblocking(False)
            self.sockets[i] = sock
            self.opened[i] = time.monotonic()
            self.selector.register(sock, selectors.EVENT_READ, i)

    def run(self, give_up: float) -> None:
        """Trickle until every connection is closed or ``give_up`` seconds pass."""
        next_byte = time.monotonic() + 1.0
        deadline = time.monotonic() + give_up
        while len(self.closed) < len(self.sockets) and time.monotonic() < deadline:
            for key, _ in self.selector.select(timeout=max(0.0, next_byte - time.monotonic())):
                self._read(key.data)
            if time.monotonic() >= next_byte:
                next_byte += 1.0
                for i, sock in self.sockets.items():
                    if i not in self.closed and self.sent[i] < len(self.data[i]):
                        with contextlib.suppress(OSError):
                            sock.send(self.data[i][self.sent[i] : self.sent[i] + 1])
                            self.sent[i] += 1

    def _read(self, i: int) -> None:
        try:
            chunk = self.sockets[i].recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk.startswith(b"HTTP/1.1 "):
            self.statuses[chunk.split()[1].decode()] += 1
        if not chunk:
            self.closed[i] = time.monotonic()
            self.selector.unregister(self.sockets[i])
            self.sockets[i].close()

    def lifetimes(self) -> list[float]:
        return sorted(self.closed[i] - self.opened[i] for i in self.closed)

    def close(self) -> None:
        for i, sock in self.sockets.items():
            if i not in self.closed:
                sock.close()


def test_slowloris(hostile: Hostile, scale: Scale, record: Callable[..., object]) -> None:
    count = scale.pick(50, 300)
    body = b"[" + b" " * 9998 + b"]"
    heads = request(PATH, body=body)
    head_only = len(heads) - len(body)
    # even: the head a byte a second; odd: the head at once, then the body a byte a second
    with hostile.clients() as clients:
        time.sleep(0.5)
        slow = SlowConnections(hostile.server.port, count, lambda i: heads,
                               lambda i: 1 if i % 2 == 0 else head_only)  # fmt: skip
        try:
            slow.run(give_up=HEAD_TIMEOUT + BODY_GRACE + 20)
        finally:
            slow.close()
    stored, duplicate_ids = settle(hostile, hostile.ledger.acknowledged)
    figures = tally(hostile.ledger, stored)
    lifetimes = slow.lifetimes()
    record(
        load=f"4 normal clients, {len(hostile.ledger.attempted):,} events, {hostile.buffer} buffer",
        faults=f"{count} connections trickling 1 byte/s (half the head, half the body)",
        acknowledged=figures.acknowledged, stored=figures.stored, lost=figures.lost,
        duplicates=figures.duplicates + duplicate_ids, p99_ms=round(clients.p99() * 1000, 1),
        slow_closed=f"{len(slow.closed)}/{count}", slow_answers=dict(slow.statuses),
        slow_lifetime_s=[round(lifetimes[0], 1), round(lifetimes[-1], 1)] if lifetimes else None,
    )  # fmt: skip
    assert len(slow.closed) == count, f"{count - len(slow.closed)} slow connections still open"
    assert slow.statuses == Counter({"408": count}), slow.statuses
    assert lifetimes[-1] < max(HEAD_TIMEOUT, BODY_GRACE) + 5, lifetimes[-5:]
    assert hostile.ledger.failures() == 0, hostile.ledger.answers
    assert clients.p99() < P99_LIMIT
    assert figures.lost == 0 and figures.unexpected == 0 and figures.duplicates == 0
    assert duplicate_ids == 0


def test_connection_flood(hostile: Hostile, scale: Scale, record: Callable[..., object]) -> None:
    cap = scale.pick(100, 1000)
    workers = 2
    count = 3 * cap * workers
    with hostile.clients() as clients:
        time.sleep(0.5)  # the clients' keep-alive connections are in before the flood
        flood = SlowConnections(hostile.server.port, count, lambda i: b"", lambda i: 0)
        try:
            flood.run(give_up=HEAD_TIMEOUT + 15)
        finally:
            flood.close()
        after_flood = _post_once(hostile.server, hostile.ledger)
    stored, duplicate_ids = settle(hostile, hostile.ledger.acknowledged)
    figures = tally(hostile.ledger, stored)
    refused = flood.statuses["503"]
    record(
        load=f"4 normal clients, {len(hostile.ledger.attempted):,} events, {hostile.buffer} buffer",
        faults=f"{count:,} idle connections against max_connections {cap} x {workers} workers",
        acknowledged=figures.acknowledged, stored=figures.stored, lost=figures.lost,
        duplicates=figures.duplicates + duplicate_ids, p99_ms=round(clients.p99() * 1000, 1),
        flood_answers=dict(flood.statuses), flood_closed=f"{len(flood.closed)}/{count}",
    )  # fmt: skip
    assert len(flood.closed) == count, f"{count - len(flood.closed)} flood connections still open"
    assert refused >= count - cap * workers, flood.statuses
    assert flood.statuses["408"] + refused == count, flood.statuses
    assert after_flood == 202
    assert hostile.ledger.failures() == 0, hostile.ledger.answers
    assert clients.p99() < P99_LIMIT
    assert figures.lost == 0 and figures.unexpected == 0 and figures.duplicates == 0
    assert duplicate_ids == 0


def _post_once(server: ServerProcess, ledger: Ledger) -> int:
    """A new client's request once the flood is gone (retried while slots close)."""
    deadline = time.monotonic() + 10
    for attempt in range(1000):
        key = f"after-flood-{attempt}"
        with ledger.lock:
            ledger.attempted.add(key)
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.post(f"{server.url}{PATH}", json={"k": key}, timeout=5)
            ledger.answer([key], answer.status_code)
            if answer.status_code == 202 or time.monotonic() > deadline:
                return answer.status_code
        time.sleep(0.1)
    return 0
