"""The distributed deployment under faults: a 3-node JetStream cluster on loopback ports (an R3
stream), 2 ``headrace ingest`` processes, 2 ``headrace deliver`` workers sharing one PostgreSQL
sink. Load runs while one NATS node, one ingest process and one delivery worker are SIGKILLed
at different moments and started again. At the end every acknowledged event is in PostgreSQL
exactly once; a request that got no 2xx may or may not be there (its sender would retry), and
is never counted as lost."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from support.natsserver import NatsNode, nats_cluster
from support.pgschema import DSN, throwaway_schema
from support.serverproc import ServerProcess, kill_leftovers

PIPELINE = """
buffer:
  type: nats
  servers: [{servers}]
  stream: HRCLUSTER
  replicas: 3
  ack_wait: 4s
  publish_timeout: 4s
sources:
  orders: {{type: http}}
sinks:
  db:
    type: postgres
    inputs: [orders]
    dsn: "{dsn}"
    schema: "{schema}"
    table: orders
    columns: {{k: text}}
    batch: {{max_age: 200ms, max_events: 500}}
"""
LOAD_SECONDS = 16.0
EVENTS_PER_REQUEST = 20


@dataclass
class Load:
    """Requests sent round-robin to the ingest nodes; the keys each answer decided."""

    urls: list[str]
    acknowledged: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)  # no 2xx: maybe stored, maybe not
    answers: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, client_id: int) -> None:
        with httpx.Client(timeout=10) as client:
            for seq in itertools.count():
                if self.stop.is_set():
                    return
                keys = [f"c{client_id}-{seq}-{i}" for i in range(EVENTS_PER_REQUEST)]
                url = self.urls[(client_id + seq) % len(self.urls)]
                try:
                    status = client.post(
                        f"{url}/v1/streams/orders/events", json=[{"k": k} for k in keys]
                    ).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__  # type: ignore[assignment]
                self.answers[str(status)] = self.answers.get(str(status), 0) + 1
                (self.acknowledged if status == 202 else self.unknown).update(keys)
                if status != 202:
                    time.sleep(0.05)  # a refused sender backs off a little


def stored_counts(schema: str) -> dict[str, int]:
    query = sql.SQL("SELECT k, count(*) FROM {} GROUP BY k").format(
        sql.Identifier(schema, "orders")
    )
    try:
        with psycopg.connect(DSN) as conn:
            return {k: int(n) for k, n in conn.execute(query)}
    except psycopg.errors.UndefinedTable:
        return {}


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


def test_every_acknowledged_event_is_stored_once_through_killed_nodes(tmp_path: Path) -> None:
    with throwaway_schema("Cluster") as schema, nats_cluster(tmp_path / "nats") as nodes:
        config = tmp_path / "pipeline.yaml"
        servers = ", ".join(node.url for node in nodes)
        config.write_text(PIPELINE.format(servers=servers, dsn=DSN, schema=schema))
        ingest = [
            ServerProcess(tmp_path / f"ingest{i}", config=config, command="ingest", workers=1)
            for i in range(2)
        ]
        deliver = [
            ServerProcess(tmp_path / f"deliver{i}", config=config, command="deliver")
            for i in range(2)
        ]
        for process in [*ingest, *deliver]:
            process.start(timeout=60)
        for process in [*ingest, *deliver]:
            process.wait_ready(timeout=60)

        load = Load([p.url for p in ingest])
        clients = [threading.Thread(target=load.run, args=(i,), daemon=True) for i in range(4)]
        for client in clients:
            client.start()
        chaos(nodes, ingest, deliver)
        load.stop.set()
        for client in clients:
            client.join(30)

        assert len(load.acknowledged) > 2000, load.answers  # the load really ran
        deadline = time.monotonic() + 120
        counts = stored_counts(schema)
        while not load.acknowledged <= counts.keys() and time.monotonic() < deadline:
            time.sleep(0.5)
            counts = stored_counts(schema)
        missing = load.acknowledged - counts.keys()
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
        twice = {k: n for k, n in counts.items() if n > 1}
        assert not twice, f"stored more than once: {dict(list(twice.items())[:5])}"
        assert counts.keys() <= load.acknowledged | load.unknown  # nothing made up
        for process in [*ingest, *deliver]:
            assert process.stop() == 0, process.log()[-3000:]


def stream_leader(nodes: list[NatsNode], stream: str) -> NatsNode:
    """The node that leads ``stream`` now."""

    async def ask() -> str:
        import nats

        nc = await nats.connect([node.url for node in nodes])
        try:
            info = await nc.jetstream().stream_info(stream)
            return str(info.cluster.leader)
        finally:
            await nc.close()

    name = asyncio.run(ask())
    return next(node for node in nodes if node.name == name)


def chaos(nodes: list[NatsNode], ingest: list[ServerProcess], deliver: list[ServerProcess]) -> None:
    """Kill one of each, at different moments, and start each again, while the load runs."""
    started = time.monotonic()

    def at(second: float) -> None:
        time.sleep(max(0.0, started + second - time.monotonic()))

    at(2)
    leader = stream_leader(nodes, "HRCLUSTER")
    leader.kill()  # the node leading the stream: the others elect a new leader
    at(5)
    ingest[1].kill()  # an ingest process with requests in flight
    at(7)
    leader.start()
    at(8)
    deliver[0].kill()  # a delivery worker holding unacknowledged batches
    at(10)
    ingest[1].start(timeout=60)
    at(12)
    deliver[0].start(timeout=60)
    at(LOAD_SECONDS)
