"""Suite item 1, the crash ledger: 8 clients POST small batches of uniquely keyed events into
``headrace serve`` while random SIGKILLs hit an ingest worker, the delivery process or the whole
server (the supervisor restarts a killed child itself; the test starts a killed server again).
At the end nothing acknowledged is missing, nothing stored was never sent, no key has two rows
at PostgreSQL or in the lake, and an event POSTed after the last restart is delivered within
30 s. Run over the local buffer (PostgreSQL and the lake) and NATS JetStream (PostgreSQL: the
lake keeps its data on one machine and is refused with a shared buffer).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reliability.conftest import Scale
from reliability.ledger import (
    Clients,
    Ledger,
    delivery_process,
    ingest_workers,
    lake_counts,
    nats_buffer,
    orders_pipeline,
    pg_counts,
    pg_duplicate_ids,
    tally,
    wait_stored,
)
from support.natsserver import nats_server
from support.pgschema import throwaway_schema
from support.serverproc import ServerProcess, kill_leftovers

LAKE = "  lake: {type: lake, inputs: [orders], batch: {max_age: 300ms, max_events: 2000}}\n"
KINDS = ("ingest", "delivery", "server")
CHILD_DEATHS = 3
"""Most kills of one kind of child in ``RESTART_WINDOW``: the supervisor gives up on a child
that dies 5 times in 30 s (``server/supervisor.py``), which is a different test."""
RESTART_WINDOW = 30.0
FRESH_DEADLINE = 30.0


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.fixture
def schema() -> Iterator[str]:
    with throwaway_schema("Ledger") as name:
        yield name


class Chaos:
    """Random SIGKILLs of one kind each: an ingest worker, the delivery process, the server."""

    def __init__(self, server: ServerProcess, seed: int) -> None:
        self.server = server
        self.random = random.Random(seed)
        self.kills: Counter[str] = Counter()
        self._recent: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self._plan: list[str] = []

    def next_kind(self) -> str:
        """The next kind in a shuffled round of all three; a child killed too often lately
        makes way for the other child, or else for a whole-server kill."""
        if not self._plan:
            self._plan = self.random.sample(KINDS, len(KINDS))
        kind = self._plan.pop()
        if kind == "server" or self._may_kill(kind):
            return kind
        other = "delivery" if kind == "ingest" else "ingest"
        return other if self._may_kill(other) else "server"

    def _may_kill(self, kind: str) -> bool:
        now = time.monotonic()
        self._recent[kind] = [t for t in self._recent[kind] if now - t < RESTART_WINDOW]
        return len(self._recent[kind]) < CHILD_DEATHS

    def kill(self, kind: str) -> None:
        if kind == "server":
            self.server.kill()
            self.server.start(timeout=60)
            for recent in self._recent.values():
                recent.clear()  # a new supervisor counts its children's deaths afresh
        else:
            os.kill(self._victim(kind), signal.SIGKILL)
        self._recent[kind].append(time.monotonic())
        self.kills[kind] += 1

    def _victim(self, kind: str) -> int:
        """A running child of ``kind`` (a restarted one may take a moment to appear)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if kind == "ingest":
                found = ingest_workers(self.server)
                if len(found) == self.server.workers:
                    return self.random.choice(found)
            else:
                pid = delivery_process(self.server)
                if pid is not None:
                    return pid
            time.sleep(0.1)
        raise AssertionError(f"no {kind} process to kill:\n{self.server.log()[-3000:]}")


def pipeline(tmp_path: Path, buffer: str, schema: str, nats_url: str) -> Path:
    batch = "{max_age: 200ms, max_events: 1000}"
    if buffer == "nats":
        text = orders_pipeline(schema, buffer=nats_buffer(nats_url, "HRLEDGER", "ack_wait: 4s"),
                               batch=batch)  # fmt: skip
    else:
        text = orders_pipeline(schema, batch=batch, more=LAKE)
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("buffer", ["local", "nats"])
def test_crash_ledger(
    tmp_path: Path, buffer: str, schema: str, scale: Scale, record: Callable[..., object]
) -> None:
    events = scale.pick(5_000, 100_000)
    kills = scale.pick(4, 21)  # the last one after the load, before the fresh event
    seed = random.SystemRandom().randrange(2**32)
    with contextlib.ExitStack() as stack:
        nats_url = (
            stack.enter_context(nats_server(tmp_path / "nats")).url if buffer == "nats" else ""
        )
        config = pipeline(tmp_path, buffer, schema, nats_url)
        data_dir = tmp_path / "data"
        server = ServerProcess(data_dir, config=config, workers=2).start(timeout=60)
        server.wait_ready(timeout=60)
        chaos = Chaos(server, seed)
        ledger = Ledger()
        started = time.monotonic()
        url = f"{server.url}/v1/streams/orders/events"
        with Clients(url, ledger, count=8, batch=5, total=events) as clients:
            for n in range(1, kills):
                # spread the kills over the load: the n-th once n/kills of it was acknowledged
                while ledger.acked() < n * events // kills and not clients.done():
                    time.sleep(0.02)
                chaos.kill(chaos.next_kind())
            while not clients.done():
                time.sleep(0.05)
        load_seconds = time.monotonic() - started

        chaos.kill("server")  # the last restart
        restarted = time.monotonic()
        fresh = f"fresh-{seed}"
        response = httpx.post(url, json={"k": fresh}, timeout=30)
        assert response.status_code == 202, response.text
        ledger.attempted.add(fresh)
        ledger.answer([fresh], response.status_code)

        def stored_everywhere() -> Counter[str]:
            pg = pg_counts(schema, "orders")
            if buffer == "local":  # a key counts once it is in both sinks
                pg &= lake_counts(data_dir, "lake", "orders")
            return pg

        wait_stored(stored_everywhere, [fresh], FRESH_DEADLINE)
        fresh_seconds = time.monotonic() - restarted
        _, drain_seconds = wait_stored(stored_everywhere, ledger.acknowledged, 120)
        exit_status = server.stop()
        at_pg = pg_counts(schema, "orders")
        at_lake = lake_counts(data_dir, "lake", "orders") if buffer == "local" else None

    pg = tally(ledger, at_pg)
    lake = tally(ledger, at_lake) if at_lake is not None else None
    kinds = ", ".join(f"{chaos.kills[k]} {k}" for k in KINDS)
    record(
        load=f"8 clients, {len(ledger.attempted):,} events, {buffer} buffer",
        faults=f"{sum(chaos.kills.values())} SIGKILLs ({kinds})",
        acknowledged=pg.acknowledged,
        stored=pg.stored,
        lost=pg.lost + (lake.lost if lake else 0),
        duplicates=pg.duplicates + (lake.duplicates if lake else 0),
        unexpected=pg.unexpected + (lake.unexpected if lake else 0),
        kills=dict(chaos.kills),
        seed=seed,
        answers=dict(ledger.answers),
        load_seconds=round(load_seconds, 1),
        fresh_delivered_seconds=round(fresh_seconds, 1),
        drained_seconds_after_fresh=round(drain_seconds, 1),
        lake=None
        if lake is None
        else {"stored": lake.stored, "lost": lake.lost, "duplicates": lake.duplicates},
    )
    assert chaos.kills["server"] >= 1 and (kills < 4 or all(chaos.kills[k] for k in KINDS))
    assert len(ledger.acknowledged) > events, ledger.answers  # the load really ran
    for name, figures in (("PostgreSQL", pg), ("the lake", lake)):
        if figures is None:
            continue
        assert figures.lost == 0, (
            f"{figures.lost} acknowledged keys not in {name}, e.g. {figures.lost_keys} (seed {seed})"
        )
        assert figures.unexpected == 0, f"{name} holds keys never sent: {figures.unexpected_keys}"
        assert figures.duplicates == 0, f"{name} holds keys twice, e.g. {figures.duplicate_keys}"
    assert pg_duplicate_ids(schema, "orders") == 0
    assert fresh_seconds <= FRESH_DEADLINE, f"the fresh event took {fresh_seconds:.1f}s"
    assert exit_status == 0, server.log()[-3000:]
