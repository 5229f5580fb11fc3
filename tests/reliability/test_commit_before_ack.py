"""Suite item 2, commit before ack: over many concurrent requests to a real ``headrace serve``,
no 2xx is written before its request's commit returned (the fsync of the local buffer, the
PubAck of the nats one).

The server runs with the order-log test hook (``HEADRACE_TEST_ORDER_LOG``, see
``headrace.buffer.orderlog``): the buffer writer appends ``committed <batch id>`` once the
commit returned, ingest appends ``ack <batch id>`` just before sending the 2xx, each line one
``O_APPEND`` write. Every 2xx the clients received must have its ``ack`` line, and every ``ack``
line a ``committed`` line of the same batch before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.natsserver import nats_server
from support.pgschema import DSN, throwaway_schema
from support.serverproc import ServerProcess, kill_leftovers

SOURCES = """
sources:
  orders: {{type: http}}
sinks:
  db: {{type: postgres, inputs: [orders], dsn: "{dsn}", schema: "{schema}", table: orders}}
"""
NATS_BUFFER = "buffer: {{type: nats, servers: [{url}], stream: ORDERLOG}}\n"
CLIENTS = 8


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.fixture(params=["local", "nats"])
def pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    config = tmp_path / "pipeline.yaml"
    with throwaway_schema("Order") as schema:
        sources = SOURCES.format(dsn=DSN, schema=schema)
        if request.param == "local":
            config.write_text(sources)
            yield "local", config
            return
        with nats_server(tmp_path / "nats") as node:
            config.write_text(NATS_BUFFER.format(url=node.url) + sources)
            yield "nats", config


def post_all(url: str, requests: int) -> tuple[list[str], int]:
    """POST ``requests`` requests from CLIENTS concurrent clients (a new connection for each
    request, so they spread over the workers); the first event id of every 2xx and the count
    of other answers."""
    firsts: list[str] = []
    other = 0
    lock = threading.Lock()

    def run(client: int) -> None:
        # one client per thread (building one costs ~20 ms), a new connection per request
        with httpx.Client(timeout=30, headers={"connection": "close"}) as http:
            for seq in range(client, requests, CLIENTS):
                body = [{"n": seq, "part": part} for part in range(1 + seq % 3)]
                note(http.post(url, json=body))

    def note(response: httpx.Response) -> None:
        nonlocal other
        with lock:
            if 200 <= response.status_code < 300:
                firsts.append(response.json()["ids"][0])
            else:
                other += 1

    threads = [threading.Thread(target=run, args=(c,)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return firsts, other


def check_order(lines: list[str]) -> tuple[dict[str, int], list[str]]:
    """The position of each batch's ack line, and the acks not preceded by their commit."""
    committed: set[str] = set()
    acks: dict[str, int] = {}
    early: list[str] = []
    for at, line in enumerate(lines):
        _pid, what, batch = line.split()
        if what == "committed":
            committed.add(batch)
        elif what == "ack":
            acks[batch] = at
            if batch not in committed:
                early.append(batch)
    return acks, early


def test_no_2xx_before_its_commit(
    pipeline: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scale: Any,
    record: Callable[..., object],
) -> None:
    buffer, config = pipeline
    requests = scale.pick(1_000, 10_000)
    order_log = tmp_path / "order.log"
    monkeypatch.setenv("HEADRACE_TEST_ORDER_LOG", str(order_log))
    server = ServerProcess(tmp_path / "data", config=config, workers=2).start()
    server.wait_ready()
    firsts, other = post_all(f"{server.url}/v1/streams/orders/events", requests)
    assert server.stop() == 0

    lines = order_log.read_text().splitlines()
    acks, early = check_order(lines)
    # an event id is its batch id's first 26 hex digits and the event's index
    answered = {first.replace("-", "")[:26] for first in firsts}
    unlogged = answered - {batch[:26] for batch in acks}
    record(
        test=f"commit before ack ({buffer})",
        load=f"{requests:,} requests from {CLIENTS} clients, 2 workers",
        faults="none (the order of commit and 2xx is checked)",
        acknowledged=len(firsts),
        early_acks=len(early),
        unlogged_2xx=len(unlogged),
    )
    assert other == 0 and len(firsts) == requests
    assert not unlogged, "a 2xx was sent without passing the ack hook"
    assert len(acks) == requests
    assert early == [], f"{len(early)} 2xx written before their commit returned"
