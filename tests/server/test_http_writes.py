"""An answer's head and body in one write (``server/http_writes.py``): the wrapper itself, and
a real ``headrace serve`` answering keep-alive POSTs, ``Expect: 100-continue``, HEAD and GET."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from headrace.server.http_writes import HeadWithBody
from server.rawhttp import connect, read_answer, readable, request
from support.serverproc import RUNNING, ServerProcess

HEAD = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n"


class Recording:
    """A transport that records each write (one write: one ``send``)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def wrapped() -> tuple[HeadWithBody, Recording]:
    transport = Recording()
    return HeadWithBody(transport), transport  # type: ignore[arg-type]


def test_the_head_goes_out_with_the_body_in_one_write() -> None:
    cycle, transport = wrapped()
    cycle.write(HEAD)
    assert transport.writes == []
    cycle.write(b"ok")
    cycle.write(b"more")  # a later chunk of a streamed body is not held
    assert transport.writes == [HEAD + b"ok", b"more"]


def test_100_continue_is_sent_at_once_and_the_head_after_it_is_held() -> None:
    cycle, transport = wrapped()
    cycle.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.write(HEAD)
    cycle.write(b"ok")
    assert transport.writes[1:] == [HEAD + b"ok"]


def test_a_held_head_is_sent_before_the_transport_closes() -> None:
    cycle, transport = wrapped()
    cycle.write(HEAD)
    cycle.close()
    assert transport.writes == [HEAD] and transport.closed
    assert cycle.is_closing()  # what the wrapper does not define is the transport's


def test_a_first_write_that_is_no_answer_head_is_not_held() -> None:
    cycle, transport = wrapped()
    cycle.write(b"0\r\n\r\n")
    assert transport.writes == [b"0\r\n\r\n"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path = tmp_path_factory.mktemp("writes")
    config = path / "pipeline.yaml"
    config.write_text(json.dumps({
        "sources": {"web": {"type": "http"}},
        "sinks": {"lake": {"type": "lake", "inputs": ["web"]}},
    }))  # fmt: skip
    proc = ServerProcess(path / "data", config=config, workers=1).start()
    RUNNING.remove(proc)
    try:
        yield proc
    finally:
        proc.stop()


def test_keepalive_posts_get_whole_answers(server: ServerProcess) -> None:
    with connect(server.port) as sock:
        for n in range(3):
            sock.sendall(request(body=json.dumps({"n": n}).encode()))
            answer = read_answer(sock)
            assert answer is not None and answer.status == 202
            assert answer.json()["accepted"] == 1


def test_expect_100_continue_gets_its_interim_answer_before_the_body(
    server: ServerProcess,
) -> None:
    body = b'{"a": 1}'
    head = request(headers=[("Expect", "100-continue")], body=body)[: -len(body)]
    with connect(server.port) as sock:
        sock.sendall(head)
        assert readable(sock, 5.0), "no 100 Continue before the body was sent"
        interim = sock.recv(len(b"HTTP/1.1 100 Continue\r\n\r\n"))
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = read_answer(sock)
    assert answer is not None and answer.status == 202


def test_head_and_get_answers_still_arrive(server: ServerProcess) -> None:
    with connect(server.port) as sock:
        sock.sendall(request("/healthz", method="HEAD"))
        deadline = time.monotonic() + 5
        data = b""
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            if readable(sock, 0.5):
                data += sock.recv(4096)
        assert data.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in data
        sock.sendall(request("/healthz", method="GET"))
        answer = read_answer(sock)
    assert answer is not None and answer.status == 200
