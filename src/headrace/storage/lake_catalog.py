"""The lake's catalog: which Parquet files hold a stream, and the stream's column types.

It lives in the state database, so a batch's files, dead letters and buffer positions are
committed in one transaction. Readers list files here rather than globbing the directory, so a
file is visible only once its batch is committed, and a compacted partition swaps its files in
one step. Replaced files are deleted after a grace period (``lake_garbage``) so a reader that
listed them just before the swap can finish.

    lake_files(sink, stream, partition, path, rows, bytes, min_time_us, max_time_us, created_us)
    lake_columns(sink, stream, name, type, position)
    lake_garbage(sink, path, delete_after_us)    -- paths relative to the sink's lake root
"""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LAKE_SCHEMA = """
CREATE TABLE IF NOT EXISTS lake_files (
    sink TEXT NOT NULL, stream TEXT NOT NULL, partition TEXT NOT NULL, path TEXT NOT NULL,
    rows INTEGER NOT NULL, bytes INTEGER NOT NULL,
    min_time_us INTEGER NOT NULL, max_time_us INTEGER NOT NULL, created_us INTEGER NOT NULL,
    PRIMARY KEY (sink, path)
);
CREATE INDEX IF NOT EXISTS lake_files_by_stream ON lake_files (sink, stream, max_time_us);
CREATE TABLE IF NOT EXISTS lake_columns (
    sink TEXT NOT NULL, stream TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    position INTEGER NOT NULL, PRIMARY KEY (sink, stream, name)
);
CREATE TABLE IF NOT EXISTS lake_garbage (
    sink TEXT NOT NULL, path TEXT NOT NULL, delete_after_us INTEGER NOT NULL,
    PRIMARY KEY (sink, path)
);
"""

RAW_COLUMN = "_raw"
"""The column holding what a Firehose function returned that is not JSON (as UTF-8 text)."""
SYSTEM_COLUMNS = frozenset({"_id", "_received_at", "_time", "_extra", RAW_COLUMN})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class LakeFile:
    """One committed Parquet file."""

    stream: str
    partition: str
    path: str
    rows: int
    bytes: int
    min_time_us: int
    max_time_us: int


def files_for(
    conn: sqlite3.Connection,
    sink: str,
    stream: str,
    since_us: int | None = None,
    until_us: int | None = None,
) -> list[LakeFile]:
    """The stream's files whose time range overlaps ``[since, until)``."""
    sql = (
        "SELECT stream, partition, path, rows, bytes, min_time_us, max_time_us FROM lake_files "
        "WHERE sink = ? AND stream = ?"
    )
    args: list[Any] = [sink, stream]
    if since_us is not None:
        sql += " AND max_time_us >= ?"
        args.append(since_us)
    if until_us is not None:
        sql += " AND min_time_us < ?"
        args.append(until_us)
    return [LakeFile(*row) for row in conn.execute(sql + " ORDER BY max_time_us DESC", args)]


def columns_of(conn: sqlite3.Connection, sink: str, stream: str) -> dict[str, str]:
    """The stream's user columns and their types, in the order they were added."""
    rows = conn.execute(
        "SELECT name, type FROM lake_columns WHERE sink = ? AND stream = ? ORDER BY position",
        (sink, stream),
    )
    return dict(rows.fetchall())


def parse_time_us(value: Any, fmt: str = "auto") -> int | None:
    """An event time in µs since the epoch, or ``None`` if ``value`` is not one (a number too
    large for a float, or infinite, is not one)."""
    try:
        return _parse_time_us(value, fmt)
    except (OverflowError, ValueError):
        return None


def _parse_time_us(value: Any, fmt: str) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
        if fmt == "epoch_s":
            return int(number * 1_000_000)
        if fmt == "epoch_ms":
            return int(number * 1000)
        if fmt == "epoch_us":
            return int(number)
        if fmt == "iso8601":
            return None
        magnitude = abs(number)
        if magnitude >= 1e14:
            return int(number)
        if magnitude >= 1e11:
            return int(number * 1000)
        return int(number * 1_000_000)
    if isinstance(value, str) and fmt in ("auto", "iso8601"):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            if fmt == "auto":
                return _parse_time_us(float(value), fmt)
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return None


def partition_of(time_us: int) -> str:
    """``dt=YYYY-MM-DD/hour=HH`` of a time in µs."""
    return _partition_of_hour(time_us // _HOUR_US)


_HOUR_US = 3600 * 1_000_000


@functools.lru_cache(maxsize=4096)
def _partition_of_hour(hour: int) -> str:
    # rendering the template costs ~3 µs; a batch's events almost always share a few hours
    from headrace.keys import LAKE_PARTITION

    return LAKE_PARTITION.render(hour * _HOUR_US)
