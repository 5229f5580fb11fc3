"""Suite item 5, poison records: 500 events into a PostgreSQL table made beforehand with a CHECK
constraint, exactly one of them breaking it. The sink isolates the refused row (it splits a
refused batch until the bad row is alone): 499 rows are stored, the bad one is a dead letter
with PostgreSQL's reason after at most 3 attempts, and the 499 are not held back (the time from
the first POST until all 499 are visible is recorded). Over the local buffer and NATS JetStream.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from headrace.storage import failures
from reliability.conftest import Scale
from reliability.ledger import nats_buffer, orders_pipeline, pg_counts, wait_stored
from support.natsserver import nats_server
from support.pgschema import DSN, throwaway_schema
from support.serverproc import ServerProcess, kill_leftovers

EVENTS, REQUESTS = 500, 10
POISON = 257
"""The event whose ``n`` the table refuses: inside a request, inside a batch."""
HELD_BACK_DEADLINE = 5.0
""""Not held back for more than a few seconds" (issue 15)."""
MAX_ATTEMPTS = 3
GOOD = frozenset(f"e{i}" for i in range(EVENTS) if i != POISON)


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


def make_table(schema: str) -> None:
    """The user's table, made before headrace sees it: ``n`` must not be negative."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(
            "CREATE TABLE {} (k text NOT NULL, n bigint NOT NULL "
            "CONSTRAINT n_not_negative CHECK (n >= 0))"
        ).format(sql.Identifier(schema, "orders")))  # fmt: skip


def dead_letters(data_dir: Path) -> list[tuple[str, str, str, int, str]]:
    """(sink, reason, error, attempts, event data) of every dead letter."""
    with failures.reading(data_dir, failures.DEAD_LETTERS) as conn:
        if conn is None:
            return []
        return list(conn.execute("SELECT sink, reason, error, attempts, data FROM dead_letters"))


@dataclass
class Round:
    """What one round found: the rows per key, the dead letters, the seconds until the good
    rows were all visible (from the first POST) and the server's exit status."""

    stored: Counter[str]
    letters: list[tuple[str, str, str, int, str]]
    seconds: float
    exit_status: int


def run_round(tmp_path: Path, name: str, schema: str, buffer_yaml: str) -> Round:
    make_table(schema)
    config = tmp_path / f"{name}.yaml"
    config.write_text(orders_pipeline(schema, buffer=buffer_yaml, columns="{k: text, n: bigint}"))
    data_dir = tmp_path / name
    server = ServerProcess(data_dir, config=config, workers=2).start(timeout=60)
    server.wait_ready(timeout=60)
    started = time.monotonic()
    post_all(f"{server.url}/v1/streams/orders/events")
    stored, _ = wait_stored(functools.partial(pg_counts, schema, "orders"), GOOD, 60)
    seconds = time.monotonic() - started
    letters = wait_for(functools.partial(dead_letters, data_dir), 30)
    return Round(stored, letters, seconds, server.stop())


@pytest.mark.parametrize("buffer", ["local", "nats"])
def test_poison_record(
    tmp_path: Path, buffer: str, scale: Scale, record: Callable[..., object]
) -> None:
    count = scale.pick(1, 5)  # each round: a fresh table and 500 events, one of them bad
    with contextlib.ExitStack() as stack:
        nats = (
            nats_buffer(stack.enter_context(nats_server(tmp_path / "nats")).url, "HRPOISON")
            if buffer == "nats"
            else ""
        )
        rounds = [
            run_round(tmp_path, f"round{n}", stack.enter_context(throwaway_schema("Poison")), nats)
            for n in range(count)
        ]
    lost = sum(len(GOOD - r.stored.keys()) for r in rounds)
    attempts = [letter[3] for r in rounds for letter in r.letters]
    record(
        load=f"{count} x {EVENTS} events in {REQUESTS} requests, {buffer} buffer",
        faults=f"1 row in {EVENTS} breaks a CHECK constraint (each round)",
        acknowledged=count * EVENTS,
        stored=sum(len(r.stored) for r in rounds),
        lost=lost,
        duplicates=sum(1 for r in rounds for n in r.stored.values() if n > 1),
        dead_letters=sum(len(r.letters) for r in rounds),
        attempts=attempts,
        seconds_to_all_499=[round(r.seconds, 2) for r in rounds],
    )
    for r in rounds:
        assert r.stored.keys() == GOOD and sum(r.stored.values()) == EVENTS - 1, (
            f"stored {sum(r.stored.values())} rows; missing {sorted(GOOD - r.stored.keys())[:5]}"
        )
        assert len(r.letters) == 1, r.letters
        sink, reason, error, tries, data = r.letters[0]
        assert (sink, reason) == ("db", "rejected_by_database")
        assert "n_not_negative" in error, error
        assert f'"k":"e{POISON}"' in data.replace(" ", ""), data
        assert tries <= MAX_ATTEMPTS, attempts
        assert r.seconds <= HELD_BACK_DEADLINE, f"the good rows waited {r.seconds:.1f}s"
        assert r.exit_status == 0


def post_all(url: str) -> None:
    """POST the 500 events in 10 concurrent requests; each must be acknowledged."""
    statuses: list[int] = []

    def send(part: int) -> None:
        per = EVENTS // REQUESTS
        body = [{"k": f"e{i}", "n": -1 if i == POISON else i}
                for i in range(part * per, (part + 1) * per)]  # fmt: skip
        statuses.append(httpx.post(url, json=body, timeout=30).status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202] * REQUESTS, statuses


def wait_for(read: Callable[[], list[tuple[str, str, str, int, str]]], timeout: float
             ) -> list[tuple[str, str, str, int, str]]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not (found := read()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found
