"""HTTP/1.1 over a bare socket, for tests that send what no client library would: thousands of
headers, a 16 MiB header, a request trickled a byte at a time, connections that never send."""

from __future__ import annotations

import json
import select
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A response as read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    """A connection to 127.0.0.1:``port``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(
    target: str = "/v1/streams/web/events",
    *,
    method: str = "POST",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> bytes:
    """A whole request: ``Host`` first, then ``headers``, then the body's length if it has one."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_answer(sock: socket.socket, timeout: float = 10.0) -> Answer | None:
    """The next response on ``sock``; ``None`` when the server closed first (or reset)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = _recv(sock, deadline)
        if not chunk:
            break
        rest += chunk
    return Answer(int(status_line.split()[1]), headers, rest[:length])


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> Answer:
    """Send ``raw`` on a new connection and read the answer (which must come)."""
    with connect(port, timeout) as sock:
        sock.sendall(raw)
        answer = read_answer(sock, timeout)
    assert answer is not None, "the server closed the connection without answering"
    return answer


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout``, reading and
    dropping whatever it sends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not _recv(sock, deadline):
                return True
        except TimeoutError:
            return False
    return False


def readable(sock: socket.socket, wait: float = 0.0) -> bool:
    """Whether the server sent something (or closed) on ``sock``."""
    return bool(select.select([sock], [], [], wait)[0])


@dataclass(frozen=True)
class Trickle:
    """What happened to a request sent a byte at a time."""

    sent: int
    answer: Answer | None
    closed_after: float | None
    """Seconds from the first byte until the server closed; ``None``: it never did."""


def trickle(sock: socket.socket, data: bytes, interval: float, give_up: float) -> Trickle:
    """Send ``data`` one byte every ``interval`` seconds until the server answers or closes
    (or ``give_up`` seconds pass); then wait for it to close."""
    started = time.monotonic()
    sent = 0
    answer: Answer | None = None
    while time.monotonic() - started < give_up:
        if readable(sock, interval if sent else 0.0):
            answer = read_answer(sock, 5.0)
            break
        if sent < len(data):
            try:
                sock.sendall(data[sent : sent + 1])
            except OSError:
                break
            sent += 1
    left = give_up - (time.monotonic() - started)
    closed = wait_closed(sock, max(left, 0.0) + 0.001)
    return Trickle(sent, answer, time.monotonic() - started if closed else None)


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""
    except TimeoutError:
        if time.monotonic() >= deadline:
            raise
        return _recv(sock, deadline)
