"""The kept failures, read through one query builder: sink dead letters and ingest bad rows.

Both are rows a person looks at, filters, pages through and replays, so every reader (the CLI's
``dlq`` and ``badrows``, ``GET /v1/deadletters``, ``GET /v1/badrows``, the dashboard's failures
pages) asks this module, naming the kind:

- ``DEAD_LETTERS``: events a sink refused for good, in ``state.db`` next to the positions (a
  refused event is recorded in the same transaction that moves the sink past it);
- ``BAD_ROWS``: events or requests refused at ingest, in ``badrows.db`` (written from a thread,
  off the request path).

The kinds stay apart on disk because their writers commit with different things; they share the
columns that matter to a reader (an owner, ``reason``, ``stream``, a time, ``replayed_at_us``).
Values are always bound parameters; the only identifiers in the SQL are this module's constants.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.storage.sqlite import open_readonly


@dataclass(frozen=True)
class FailureKind:
    """One kind of kept failure: where it lives and what its columns mean."""

    name: str  # "dead_letter" or "bad_row", as readers show it
    file: str  # under the data directory
    table: str
    owner: str  # the column naming who refused (sink) or whose request it was (source)
    at: str  # the column of the failure's time, µs
    body: str  # the column holding the event (or raw request)
    columns: str  # what a row is read as, in order


DEAD_LETTERS = FailureKind(
    "dead_letter", "state.db", "dead_letters", "sink", "failed_at_us", "data",
    "id, sink, reason, error, attempts, event_id, stream, source, received_at_us, data, "
    "failed_at_us, replayed_at_us",
)  # fmt: skip
BAD_ROWS = FailureKind(
    "bad_row", "badrows.db", "bad_rows", "source", "received_at_us", "raw",
    "id, source, stream, reason, path, message, received_at_us, raw, raw_bytes, replayed_at_us",
)  # fmt: skip
KINDS = {kind.name: kind for kind in (DEAD_LETTERS, BAD_ROWS)}


@dataclass(frozen=True)
class FailureFilter:
    """Which failures: by owner (the sink, or the source), reason and stream; those already
    replayed only when asked."""

    owner: str | None = None
    reason: str | None = None
    stream: str | None = None
    include_replayed: bool = False

    @classmethod
    def from_params(cls, kind: FailureKind, values: dict[str, str]) -> FailureFilter:
        """The filter a query string names (``sink=`` or ``source=``, ``reason=``, ``stream=``,
        ``replayed=true``)."""
        return cls(
            owner=values.get(kind.owner) or None,
            reason=values.get("reason") or None,
            stream=values.get("stream") or None,
            include_replayed=values.get("replayed") == "true",
        )

    def value_of(self, kind: FailureKind, column: str) -> str | None:
        """The filter's value for one of the filterable columns."""
        return self.owner if column == kind.owner else getattr(self, column)


def filter_columns(kind: FailureKind) -> tuple[str, str, str]:
    """The columns a listing filters and counts by."""
    return (kind.owner, "reason", "stream")


def where(
    kind: FailureKind, found: FailureFilter, *, skip: str | None = None
) -> tuple[list[str], list[Any]]:
    """The conditions of ``found`` (all but the column ``skip``) and their arguments."""
    parts: list[str] = []
    args: list[Any] = []
    for column in filter_columns(kind):
        value = found.value_of(kind, column)
        if value and column != skip:
            parts.append(f"{column} = ?")
            args.append(value)
    if not found.include_replayed:
        parts.append("replayed_at_us IS NULL")
    return parts, args


def _clause(parts: list[str]) -> str:
    return (" WHERE " + " AND ".join(parts)) if parts else ""


def select_page(
    conn: sqlite3.Connection, kind: FailureKind, found: FailureFilter, *, limit: int,
    after_id: int | None = None, before_id: int | None = None,
) -> list[tuple[Any, ...]]:  # fmt: skip
    """A page of rows (``kind.columns``): oldest first after ``after_id``, or newest first
    before ``before_id`` (keyset paging: page 500 costs what page 1 does)."""
    parts, args = where(kind, found)
    newest_first = after_id is None
    if after_id is not None:
        parts.append("id > ?")
        args.append(after_id)
    if before_id is not None:
        parts.append("id < ?")
        args.append(before_id)
    order = "DESC" if newest_first else ""
    sql = f"SELECT {kind.columns} FROM {kind.table}{_clause(parts)} ORDER BY id {order} LIMIT ?"
    return list(conn.execute(sql, [*args, limit]))


def count(conn: sqlite3.Connection, kind: FailureKind, found: FailureFilter) -> int:
    """How many rows ``found`` matches."""
    parts, args = where(kind, found)
    return int(
        conn.execute(f"SELECT count(*) FROM {kind.table}{_clause(parts)}", args).fetchone()[0]
    )


def choices(
    conn: sqlite3.Connection, kind: FailureKind, found: FailureFilter, column: str
) -> list[tuple[str, int]]:
    """The values of ``column`` under the other filters, commonest first (at most 200)."""
    if column not in filter_columns(kind):
        raise ValueError(f"{kind.table} is not filtered by {column}")
    parts, args = where(kind, found, skip=column)
    rows = conn.execute(
        f"SELECT {column}, count(*) AS n FROM {kind.table}{_clause(parts)} "
        f"GROUP BY {column} ORDER BY n DESC, {column} LIMIT 200",
        args,
    )
    return [(value, int(n)) for value, n in rows]


def select_one(conn: sqlite3.Connection, kind: FailureKind, row_id: int) -> tuple[Any, ...] | None:
    """One row (``kind.columns``) by its id."""
    row = conn.execute(f"SELECT {kind.columns} FROM {kind.table} WHERE id = ?", (row_id,))
    found: tuple[Any, ...] | None = row.fetchone()
    return found


def column_names(kind: FailureKind) -> list[str]:
    """``kind.columns`` as a list, to name a row's values."""
    return [name.strip() for name in kind.columns.split(",")]


@contextmanager
def reading(data_dir: Path, kind: FailureKind) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to the kind's database, or None when nothing was kept yet (no
    file, or no table: both are created with the first failure)."""
    path = data_dir / kind.file
    if not path.exists():
        yield None
        return
    conn = open_readonly(path)
    try:
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (kind.table,)
        ).fetchone()
        yield conn if has_table else None
    finally:
        conn.close()
