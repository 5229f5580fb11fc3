"""``headrace serve`` on a NATS JetStream buffer (one real nats-server on a loopback port) into
PostgreSQL: the basic path (POST, PubAck, deliver, GET), ``headrace ingest`` and ``headrace
deliver`` as separate processes, replay from the stream, and the faults a user meets first (no
server, a stream set up wrongly, credentials refused) with the message each gives."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.natsserver import NatsNode, nats_server
from support.pgschema import DSN, table_rows, throwaway_schema
from support.serverproc import ServerProcess, free_port, kill_leftovers

PIPELINE = """
buffer:
  type: nats
  servers: [{url}]
  stream: {stream}
  {buffer_extra}
sources:
  orders: {{type: http}}
sinks:
  db:
    type: postgres
    inputs: [orders]
    dsn: "{dsn}"
    schema: "{schema}"
    table: orders
    columns: {{n: bigint}}
    batch: {{max_age: 200ms}}
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsNode]:
    with nats_server(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def schema() -> Iterator[str]:
    with throwaway_schema("Nats") as name:
        yield name


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


def pipeline_file(tmp_path: Path, url: str, schema: str, *, stream: str = "HR", extra: str = ""
                  ) -> Path:  # fmt: skip
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE.format(url=url, stream=stream, buffer_extra=extra, dsn=DSN,
                                    schema=schema))  # fmt: skip
    return path


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def post(server: ServerProcess, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/streams/orders/events", json=body, timeout=15)


def stored(schema: str) -> list[int]:
    return sorted(int(row["n"]) for row in table_rows(schema, "orders"))


def buffer_problem(server: ServerProcess) -> str:
    """What ``/readyz`` says of the buffer once the first connection attempt has an answer."""
    ready = httpx.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 503, ready.text
    problem: str = ready.json()["problems"]["buffer"]
    return "" if problem == "connecting to NATS" else problem


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headrace.cli", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_post_is_acknowledged_by_jetstream_delivered_to_postgres_and_read_back(
    tmp_path: Path, node: NatsNode, schema: str
) -> None:
    config = pipeline_file(tmp_path, node.url, schema)
    server = ServerProcess(tmp_path / "data", config=config).start()
    server.wait_ready()
    response = post(server, [{"n": i} for i in range(50)])
    assert response.status_code == 202, response.text
    assert post(server, {"n": 50}).status_code == 202
    eventually(lambda: stored(schema) == list(range(51)), what="51 rows in PostgreSQL")
    page = httpx.get(f"{server.url}/v1/streams/orders/events", params={"limit": 5}).json()
    assert [e["data"]["n"] for e in page["events"]] == [50, 49, 48, 47, 46]
    assert page["next_cursor"]
    eventually(
        lambda: server.metrics().get('headrace_events_delivered_total{sink="db"}') == 51,
        what="the delivery counted",
    )
    # the dashboard reads the sink's delivery from JetStream: nothing pending, all acknowledged
    overview = httpx.get(f"{server.url}/api/dashboard/overview", timeout=10).json()
    assert overview["buffer"]["type"] == "nats"
    assert overview["buffer"]["stream"]["messages"] == 2  # one per accepted request
    (sink,) = overview["sinks"]
    assert sink["consumer"] == {"pending": 0, "ack_pending": 0, "redelivered": 0,
                                "waiting": sink["consumer"]["waiting"], "acknowledged_seq": 2}  # fmt: skip
    assert server.stop() == 0


def test_ingest_and_deliver_run_as_separate_processes(
    tmp_path: Path, node: NatsNode, schema: str
) -> None:
    config = pipeline_file(tmp_path, node.url, schema)
    ingest = ServerProcess(tmp_path / "ingest", config=config, command="ingest").start()
    ingest.wait_ready()  # ready without any delivery on this machine
    assert post(ingest, [{"n": i} for i in range(20)]).status_code == 202
    deliver = ServerProcess(tmp_path / "deliver", config=config, command="deliver").start()
    deliver.wait_ready()
    eventually(lambda: stored(schema) == list(range(20)), what="20 rows")
    eventually(
        lambda: deliver.metrics().get('headrace_events_delivered_total{sink="db"}') == 20,
        what="the delivery counted on the deliver node's port",
    )
    assert not (tmp_path / "ingest" / "state.db").exists()  # ingest keeps nothing to deliver
    assert deliver.stop() == 0 and ingest.stop() == 0


def test_replay_publishes_a_time_range_again_and_adds_no_row(
    tmp_path: Path, node: NatsNode, schema: str
) -> None:
    config = pipeline_file(tmp_path, node.url, schema)
    server = ServerProcess(tmp_path / "data", config=config).start()
    server.wait_ready()
    assert post(server, [{"n": i} for i in range(10)]).status_code == 202
    eventually(lambda: stored(schema) == list(range(10)), what="10 rows")
    replayed = cli("replay", "-c", str(config), "--stream", "orders",
                   "--since", "2020-01-01", "--until", "2100-01-01")  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert "queued 10 event(s) of orders" in replayed.stdout
    eventually(
        lambda: server.metrics().get('headrace_events_delivered_total{sink="db"}') == 20,
        what="the replayed events delivered",
    )
    assert stored(schema) == list(range(10))  # delivered again, stored once
    assert server.stop() == 0


def test_no_server_at_start_makes_readyz_say_so_and_posts_get_503(
    tmp_path: Path, schema: str
) -> None:
    port = free_port()
    config = pipeline_file(tmp_path, f"nats://127.0.0.1:{port}", schema,
                           extra="publish_timeout: 1s")  # fmt: skip
    server = ServerProcess(tmp_path / "data", config=config).start()
    problem = eventually(lambda: buffer_problem(server))
    assert f"cannot reach NATS at nats://127.0.0.1:{port}" in problem
    refused = post(server, {"n": 1})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
    assert refused.json()["error"] == "buffer_full"
    overview = httpx.get(f"{server.url}/api/dashboard/overview", timeout=30).json()
    assert "cannot reach NATS" in overview["buffer"]["problem"]
    with nats_server(tmp_path / "late", port=port):  # the server comes up: ingest recovers
        server.wait_ready(timeout=60)
        assert post(server, {"n": 1}).status_code == 202
        eventually(lambda: stored(schema) == [1], what="the row")
        assert server.stop() == 0


def test_a_missing_or_misconfigured_stream_is_named(
    tmp_path: Path, node: NatsNode, schema: str
) -> None:
    missing = pipeline_file(tmp_path, node.url, schema, stream="ELSEWHERE",
                            extra="manage_stream: false")  # fmt: skip
    server = ServerProcess(tmp_path / "a", config=missing).start()
    problem = eventually(lambda: buffer_problem(server))
    assert "stream ELSEWHERE does not exist" in problem and "buffer.manage_stream" in problem
    assert post(server, {"n": 1}).status_code == 503
    server.stop()

    asyncio.run(_memory_stream(node.url, "INMEMORY", "headrace.>"))
    wrong = pipeline_file(tmp_path, node.url, schema, stream="INMEMORY")
    server = ServerProcess(tmp_path / "b", config=wrong).start()
    problem = eventually(lambda: buffer_problem(server))
    assert "stream INMEMORY keeps messages in memory" in problem
    replayed = cli("replay", "-c", str(wrong), "--stream", "orders",
                   "--since", "2020-01-01", "--until", "2100-01-01")  # fmt: skip
    assert replayed.returncode == 1 and "keeps messages in memory" in replayed.stderr
    assert "Traceback" not in replayed.stderr
    server.stop()


async def _memory_stream(url: str, name: str, subject: str) -> None:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=name, subjects=[subject], storage=StorageType.MEMORY)
        )
    finally:
        await nc.close()


def test_refused_credentials_are_named_and_never_shown(tmp_path: Path, schema: str) -> None:
    with nats_server(tmp_path / "nats", extra="authorization { token: right-token }") as node:
        config = pipeline_file(tmp_path, node.url, schema, extra='token: "wrong-token"')
        server = ServerProcess(tmp_path / "data", config=config).start()
        problem = eventually(lambda: buffer_problem(server))
        assert "refused the credentials (buffer.token" in problem
        assert post(server, {"n": 1}).status_code == 503
        server.stop()
        assert "wrong-token" not in server.log()
        good = pipeline_file(tmp_path, node.url, schema, extra='token: "right-token"')
        server = ServerProcess(tmp_path / "data", config=good).start()
        server.wait_ready()
        assert post(server, {"n": 7}).status_code == 202
        eventually(lambda: stored(schema) == [7], what="the row")
        assert server.stop() == 0
