"""Delivery state in ``<data>/state.db`` (SQLite, WAL, synchronous=FULL).

Tables:
- what the buffer keeps of each sink's progress (``headrace.buffer``: the local buffer's
  ``positions``), written through the batch's acknowledgement.
- ``dead_letters``: events a sink refused for good, with the typed reason, the error text, the
  attempts and the original event; ``replayed_at_us`` marks those sent back for delivery. They
  are read through ``storage.failures``, the query builder they share with the bad rows. One
  letter per (sink, event id): an event that fails again (a replayed letter, a replayed range)
  updates its letter (attempts added, last reason, error and failed-at) instead of adding one.
- the lake catalog (``lake_files``, ``lake_columns``, ``lake_garbage``), see ``sinks.lake``.

A sink that can commit atomically with its own data (the lake, whose catalog lives here) applies
the batch's ``Checkpoint`` (acknowledgement and dead letters) in the same transaction as its data;
for other sinks the runtime applies it right after a successful write (sinks dedupe by event id,
so a redelivery is harmless).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from headrace.storage import failures
from headrace.storage.failures import DEAD_LETTERS, FailureFilter
from headrace.storage.sqlite import open_database, open_readonly
from headrace.types import Event, FailedRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL, reason TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL,
    event_id TEXT NOT NULL, stream TEXT NOT NULL, source TEXT NOT NULL,
    received_at_us INTEGER NOT NULL, data TEXT NOT NULL,
    failed_at_us INTEGER NOT NULL, replayed_at_us INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_by_sink ON dead_letters (sink, id);
CREATE INDEX IF NOT EXISTS dead_letters_by_event ON dead_letters (sink, event_id);
"""

_json = msgspec.json.Encoder()


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the state database (one per thread)."""
    return open_readonly(path) if readonly else open_database(path)


def init_schema(conn: sqlite3.Connection, extra: Iterable[str] = ()) -> None:
    """Create the tables if missing."""
    conn.executescript(SCHEMA)
    for script in extra:
        conn.executescript(script)


class Recordable(Protocol):
    """What the buffer saves of a batch's acknowledgement (``headrace.buffer.Acknowledgement``)."""

    def record(self, conn: sqlite3.Connection) -> None:
        """Save it in the caller's transaction."""


@dataclass
class Checkpoint:
    """What committing a batch saves besides the sink's data: the buffer's acknowledgement, the
    dead letters found, and the state of the transforms on the way."""

    sink: str
    ack: Recordable | None = None
    """The batch's acknowledgement to the buffer (none: nothing to acknowledge, in tests)."""
    attempts: int = 1
    dead: list[FailedRecord] = field(default_factory=list)
    """Records refused before the sink saw them (undecodable), saved with the positions."""
    on_apply: list[Callable[[sqlite3.Connection, set[str]], None]] = field(default_factory=list)
    """State of transforms (a dedupe window) saved in the same transaction; each is called with
    the ids of the batch's events that went to the dead-letter store instead of the sink."""

    def apply(self, conn: sqlite3.Connection, failed: Iterable[FailedRecord] = ()) -> None:
        """Record the acknowledgement and the dead letters; the caller owns the transaction."""
        failed = [*self.dead, *failed]
        if self.ack is not None:
            self.ack.record(conn)
        add_dead_letters(conn, self.sink, failed, self.attempts)
        if self.on_apply:
            undelivered = {f.event.id for f in failed}
            for hook in self.on_apply:
                hook(conn, undelivered)


def add_dead_letters(
    conn: sqlite3.Connection, sink: str, failed: Iterable[FailedRecord], attempts: int
) -> int:
    """Record refused events (updating the letter of an event that failed before); returns how
    many."""
    now = time.time_ns() // 1000
    count = 0
    for f in failed:
        count += 1
        error = f.error[:4000]
        # an event that is refused again (a replayed letter failing anew) keeps its one letter:
        # the attempts add up and the letter is pending again
        updated = conn.execute(
            "UPDATE dead_letters SET reason = ?, error = ?, attempts = attempts + ?, "
            "failed_at_us = ?, replayed_at_us = NULL WHERE sink = ? AND event_id = ?",
            (f.reason, error, attempts, now, sink, f.event.id),
        ).rowcount
        if updated:
            continue
        conn.execute(
            "INSERT INTO dead_letters (sink, reason, error, attempts, event_id, stream, source, "
            "received_at_us, data, failed_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sink,
                f.reason,
                error,
                attempts,
                f.event.id,
                f.event.stream,
                f.event.source,
                f.event.received_at_us,
                _json.encode(f.event.data).decode(),
                now,
            ),
        )
    return count


@dataclass(frozen=True)
class DeadLetter:
    """One row of the dead-letter store."""

    id: int
    sink: str
    reason: str
    error: str
    attempts: int
    event_id: str
    stream: str
    source: str
    received_at_us: int
    data: str
    failed_at_us: int
    replayed_at_us: int | None

    def event(self) -> Event:
        """The original event."""
        data: dict[str, Any] = msgspec.json.decode(self.data)
        return Event(self.event_id, self.stream, self.source, self.received_at_us, data, True)


def list_dead_letters(
    conn: sqlite3.Connection,
    *,
    sink: str | None = None,
    reason: str | None = None,
    stream: str | None = None,
    include_replayed: bool = False,
    limit: int = 100,
    after_id: int = 0,
) -> list[DeadLetter]:
    """Dead letters, oldest first, optionally filtered."""
    found = FailureFilter(sink, reason, stream, include_replayed)
    rows = failures.select_page(conn, DEAD_LETTERS, found, limit=limit, after_id=after_id)
    return [DeadLetter(*row) for row in rows]


def get_dead_letter(conn: sqlite3.Connection, dead_letter_id: int) -> DeadLetter | None:
    """One dead letter by its id."""
    row = failures.select_one(conn, DEAD_LETTERS, dead_letter_id)
    return DeadLetter(*row) if row else None


def mark_replayed(conn: sqlite3.Connection, letters: Iterable[DeadLetter]) -> None:
    """Mark dead letters as sent back for delivery, unless one failed again since it was read
    (a running server may have delivered and refused it already: it stays pending)."""
    now = time.time_ns() // 1000
    conn.executemany(
        "UPDATE dead_letters SET replayed_at_us = ? WHERE id = ? AND failed_at_us = ?",
        [(now, letter.id, letter.failed_at_us) for letter in letters],
    )
