"""The ledgers the reliability tests keep, Jepsen-style: what clients attempted, what headrace
acknowledged, what the sinks hold, and the arithmetic between them.

- ``Ledger``: every key a client sent (``attempted``) and every key a 2xx covered
  (``acknowledged``), with the answers by status. A key names one event for good: clients never
  send a key twice, so a request that got no 2xx leaves its keys attempted and unknown (maybe
  stored, maybe not; its sender would retry), never lost.
- ``Clients``: threads POSTing small batches of uniquely keyed events (field ``k``) into one
  ledger, as fast as they can or at a steady pace.
- ``pg_counts`` / ``lake_counts``: how many rows each key has at PostgreSQL and in the lake.
- ``tally``: lost = acknowledged - stored, unexpected = stored - attempted, duplicates = keys
  stored more than once.
- ``ingest_workers`` / ``delivery_process``: the children of a ``headrace serve`` a test kills.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pyarrow.parquet as pq
from psycopg import sql

from support.pgschema import DSN
from support.serverproc import ServerProcess

KEY = "k"
"""The event field holding the client's unique key."""


@dataclass
class Ledger:
    """What clients attempted and what headrace acknowledged; see the module docstring."""

    attempted: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)
    """Answers by status (``202``, ``503``…) or by the exception a request met."""
    timeline: list[tuple[float, str]] = field(default_factory=list)
    """(``time.monotonic()`` when answered, status) of every request, in order."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, keys: list[str], status: int | str) -> None:
        with self.lock:
            self.answers[str(status)] += 1
            self.timeline.append((time.monotonic(), str(status)))
            if isinstance(status, int) and 200 <= status < 300:
                self.acknowledged.update(keys)

    def acked(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def snapshot(self) -> set[str]:
        """The keys acknowledged so far."""
        with self.lock:
            return set(self.acknowledged)

    def answers_between(self, start: float, end: float) -> Counter[str]:
        """The answers given from ``start`` to ``end`` (``time.monotonic()``)."""
        with self.lock:
            return Counter(status for at, status in self.timeline if start <= at < end)

    def first_success_after(self, start: float) -> float | None:
        """When the first 2xx after ``start`` was answered."""
        with self.lock:
            return next((at for at, s in self.timeline if at >= start and s.startswith("2")), None)

    def failures(self) -> int:
        """Requests answered anything but a 2xx (or not answered)."""
        with self.lock:
            return sum(n for status, n in self.answers.items() if not status.startswith("2"))


class Clients:
    """``count`` threads POSTing batches of 1..``batch`` uniquely keyed events to ``url`` until
    stopped (or ``total`` events were acknowledged), each every ``pace`` seconds at most (0: as
    fast as answers come). A refused or failed request is not resent (its keys stay attempted);
    its sender backs off ``backoff`` seconds."""

    def __init__(
        self,
        url: str | Callable[[], str],
        ledger: Ledger,
        *,
        count: int = 8,
        batch: int = 5,
        total: int | None = None,
        pace: float = 0.0,
        backoff: float = 0.02,
        body: Callable[[list[str]], list[dict[str, object]]] | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.url = url if callable(url) else (lambda: url)
        self.ledger = ledger
        self.batch = batch
        self.total = total
        self.pace = pace
        self.backoff = backoff
        self.body = body or (lambda keys: [{KEY: k} for k in keys])
        self.timeout = timeout
        self.stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"client-{n}", daemon=True)
            for n in range(count)
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def done(self) -> bool:
        """Whether every client has stopped (``total`` reached, or told to)."""
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            seq = 0
            while not self.stop.is_set():
                seq += 1
                keys = [f"c{n}-{seq}-{i}" for i in range(1 + seq % self.batch)]
                with self.ledger.lock:
                    if self.total is not None and len(self.ledger.acknowledged) >= self.total:
                        return
                    self.ledger.attempted.update(keys)
                started = time.monotonic()
                status = self._post(client, keys)
                self.ledger.answer(keys, status)
                wait = self.pace - (time.monotonic() - started)
                if not isinstance(status, int) or status >= 300:
                    wait = max(wait, self.backoff)
                if wait > 0:
                    self.stop.wait(wait)

    def _post(self, client: httpx.Client, keys: list[str]) -> int | str:
        try:
            return client.post(self.url(), json=self.body(keys)).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__


def wait_for_acks(ledger: Ledger, at_least: int, timeout: float = 60.0) -> None:
    """Wait until ``at_least`` keys are acknowledged; fails if the clients stall."""
    deadline = time.monotonic() + timeout
    while ledger.acked() < at_least:
        assert time.monotonic() < deadline, (
            f"clients stalled at {ledger.acked()} acks: {ledger.answers}"
        )
        time.sleep(0.02)


# -- what the sinks hold ----------------------------------------------------------------------


def pg_counts(schema: str, table: str, column: str = KEY) -> Counter[str]:
    """Rows per value of ``column`` in ``schema.table`` (empty while there is no table)."""
    query = sql.SQL("SELECT {c}, count(*) FROM {t} GROUP BY {c}").format(
        c=sql.Identifier(column), t=sql.Identifier(schema, table)
    )
    try:
        with psycopg.connect(DSN) as conn:
            return Counter({str(k): int(n) for k, n in conn.execute(query)})
    except psycopg.errors.UndefinedTable:
        return Counter()


def pg_duplicate_ids(schema: str, table: str) -> int:
    """Event ids stored in more than one row (the unique index should make this 0)."""
    query = sql.SQL(
        "SELECT count(*) FROM (SELECT _event_id FROM {} GROUP BY 1 HAVING count(*) > 1) d"
    ).format(sql.Identifier(schema, table))
    with psycopg.connect(DSN) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def lake_counts(
    data_dir: Path, sink: str, stream: str, column: str = KEY, lake_root: Path | None = None
) -> Counter[str]:
    """Rows per value of ``column`` in the lake sink's committed files of ``stream`` (the
    catalog in ``state.db`` says which files are committed). Files the upkeep thread is
    compacting away meanwhile are retried."""
    root = lake_root or data_dir / "lake"
    for _attempt in range(20):
        try:
            with sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True) as conn:
                paths = [row[0] for row in conn.execute(
                    "SELECT path FROM lake_files WHERE sink = ? AND stream = ?", (sink, stream))]  # fmt: skip
            counts: Counter[str] = Counter()
            for path in paths:
                values = pq.read_table(root / path, columns=[column]).column(column).to_pylist()
                counts.update(str(v) for v in values)
            return counts
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) or "unable to open" in str(exc):
                return Counter()  # nothing delivered yet
            time.sleep(0.2)
        except FileNotFoundError:
            time.sleep(0.2)  # swapped out by compaction between listing and reading
    raise AssertionError(f"the lake of {sink} could not be read consistently")


@dataclass(frozen=True)
class Tally:
    """One sink's ledger figures."""

    acknowledged: int
    stored: int
    lost: int
    unexpected: int
    duplicates: int
    lost_keys: list[str]
    unexpected_keys: list[str]
    duplicate_keys: list[str]


def tally(ledger: Ledger, stored: Counter[str]) -> Tally:
    """lost = acknowledged - stored, unexpected = stored - attempted, duplicates = keys stored
    more than once (each with a few examples)."""
    keys = set(stored)
    lost = sorted(ledger.acknowledged - keys)
    unexpected = sorted(keys - ledger.attempted)
    repeated = sorted(k for k, n in stored.items() if n > 1)
    return Tally(len(ledger.acknowledged), len(keys), len(lost), len(unexpected), len(repeated),
                 lost[:5], unexpected[:5], repeated[:5])  # fmt: skip


def wait_stored(
    read: Callable[[], Counter[str]], keys: Iterable[str], timeout: float
) -> tuple[Counter[str], float]:
    """Poll ``read`` until it holds every one of ``keys`` (or ``timeout`` passes); returns what
    it read last and how long that took."""
    wanted = set(keys)
    started = time.monotonic()
    while True:
        stored = read()
        elapsed = time.monotonic() - started
        if wanted <= stored.keys() or elapsed > timeout:
            return stored, elapsed
        time.sleep(0.2)


# -- the processes of a server ----------------------------------------------------------------


def _nice(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[16])  # field 19 of stat(5): nice


def _spawned(pid: int) -> bool:
    """A multiprocessing child that runs headrace (not multiprocessing's resource tracker)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in cmdline and b"resource_tracker" not in cmdline


def ingest_workers(server: ServerProcess) -> list[int]:
    """PIDs of the server's ingest workers (the delivery process is the one running niced,
    see ``server/supervisor.py``)."""
    return [p for p in server.children() if _spawned(p) and _nice(p) == 0]


def delivery_process(server: ServerProcess) -> int | None:
    """PID of the server's delivery process, if it runs."""
    found = [p for p in server.children() if _spawned(p) and (_nice(p) or 0) > 0]
    return found[0] if found else None


__all__ = [
    "KEY",
    "Clients",
    "Ledger",
    "Tally",
    "delivery_process",
    "ingest_workers",
    "lake_counts",
    "pg_counts",
    "pg_duplicate_ids",
    "tally",
    "wait_for_acks",
    "wait_stored",
]


def orders_pipeline(
    schema: str,
    *,
    dsn: str = DSN,
    buffer: str = "",
    columns: str = "{k: text}",
    batch: str = "{max_age: 200ms}",
    sink_keys: str = "",
    more: str = "",
) -> str:
    """The suite's pipeline file: the source ``orders`` into the PostgreSQL sink ``db`` (table
    ``orders`` in ``schema``, the key column ``k``). ``buffer`` is a ``buffer:`` line (the
    local buffer if empty), ``sink_keys`` more keys of ``db`` (YAML flow, ``a: 1, b: 2``),
    ``more`` YAML appended at the top level or, indented, more sinks."""
    extra = f", {sink_keys}" if sink_keys else ""
    return (
        f"{buffer}\n"
        "sources:\n  orders: {type: http}\n"
        "sinks:\n"
        f'  db: {{type: postgres, inputs: [orders], dsn: "{dsn}", schema: "{schema}", '
        f"table: orders, columns: {columns}, batch: {batch}{extra}}}\n"
        f"{more}"
    )


def nats_buffer(url: str, stream: str, extra: str = "") -> str:
    """A ``buffer:`` line for one nats-server at ``url``; ``extra``: more keys (YAML flow)."""
    return (
        f"buffer: {{type: nats, servers: [{url}], stream: {stream}{', ' + extra if extra else ''}}}"
    )
