"""The bad-rows store: every event or request refused at ingest (auth aside), kept for a look
and a replay.

``<data>/badrows.db`` (SQLite, WAL), one table::

    bad_rows(id, source, stream, reason, path, message, received_at_us,
             raw (at most RAW_LIMIT bytes), raw_bytes (the full size), replayed_at_us)

Reasons: ``schema_violation``, ``decode_error``, ``size_violation``, ``mapping_error`` (which
refusals are kept, and as what, is ``headrace.ingest.badrows.REASONS``). Listings go through the
failures query builder (``storage.failures``) shared with the dead letters.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.storage import failures
from headrace.storage.failures import BAD_ROWS, FailureFilter
from headrace.storage.sqlite import open_database

RAW_LIMIT = 64 * 1024
SCHEMA = """
CREATE TABLE IF NOT EXISTS bad_rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL, stream TEXT NOT NULL, reason TEXT NOT NULL,
    path TEXT NOT NULL, message TEXT NOT NULL, received_at_us INTEGER NOT NULL,
    raw BLOB NOT NULL, raw_bytes INTEGER NOT NULL, replayed_at_us INTEGER
);
CREATE INDEX IF NOT EXISTS bad_rows_by_source ON bad_rows (source, id);
"""


@dataclass(frozen=True)
class BadRow:
    """One kept refusal."""

    id: int
    source: str
    stream: str
    reason: str
    path: str
    message: str
    received_at_us: int
    raw: bytes
    raw_bytes: int
    replayed_at_us: int | None

    @property
    def complete(self) -> bool:
        """Whether ``raw`` holds all the bytes (only then can it be replayed)."""
        return len(self.raw) == self.raw_bytes

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (raw as text, invalid UTF-8 replaced)."""
        return {
            "id": self.id, "source": self.source, "stream": self.stream, "reason": self.reason,
            "path": self.path, "message": self.message, "received_at_us": self.received_at_us,
            "raw": self.raw.decode("utf-8", "replace"), "raw_bytes": self.raw_bytes,
            "replayed_at_us": self.replayed_at_us,
        }  # fmt: skip


class BadRowStore:
    """Writes and reads ``badrows.db``; safe to share between threads."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "badrows.db"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = open_database(self.path)
            conn.executescript(SCHEMA)
            self._conn = conn
        return self._conn

    def add(self, rows: list[tuple[str, str, str, str, str, int, bytes]]) -> None:
        """Keep refusals: (source, stream, reason, path, message, received_at_us, raw)."""
        with self._lock:
            self._connection().executemany(
                "INSERT INTO bad_rows (source, stream, reason, path, message, received_at_us, "
                "raw, raw_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (s, st, r, p, m[:2000], t, raw[:RAW_LIMIT], len(raw))
                    for s, st, r, p, m, t, raw in rows
                ],
            )

    def find(
        self, *, source: str | None = None, reason: str | None = None, stream: str | None = None,
        include_replayed: bool = False, after_id: int = 0, limit: int = 100,
    ) -> list[BadRow]:  # fmt: skip
        """Bad rows, oldest first."""
        found = FailureFilter(source, reason, stream, include_replayed)
        with self._lock:
            rows = failures.select_page(
                self._connection(), BAD_ROWS, found, limit=limit, after_id=after_id
            )
        return [BadRow(*row) for row in rows]

    def get(self, row_id: int) -> BadRow | None:
        """One bad row."""
        with self._lock:
            row = failures.select_one(self._connection(), BAD_ROWS, row_id)
        return BadRow(*row) if row else None

    def mark_replayed(self, ids: list[int]) -> None:
        """Mark rows whose events were sent on."""
        now = time.time_ns() // 1000
        with self._lock:
            self._connection().executemany(
                "UPDATE bad_rows SET replayed_at_us = ? WHERE id = ?", [(now, i) for i in ids]
            )
