"""API keys: issued by ``headrace keys create``, shown once, stored only as SHA-256 hashes.

``<data>/keys.db``::

    api_keys(id, source, name, hash, prefix, rate, created_at_us, revoked_at_us)

A key is ``hr_`` plus 43 characters of URL-safe base64 (256 random bits), so a plain SHA-256 is
enough to store it: there is nothing to guess. ``prefix`` (the first 10 characters) lets people
tell keys apart in listings. Ingest workers reload the table every few seconds, so new and
revoked keys take effect without a restart.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from headrace.storage.sqlite import open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, rate REAL,
    created_at_us INTEGER NOT NULL, revoked_at_us INTEGER
);
"""


@dataclass(frozen=True)
class ApiKey:
    """One issued key (never the key itself)."""

    id: int
    source: str
    name: str
    prefix: str
    rate: float | None
    created_at_us: int
    revoked_at_us: int | None


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class KeyStore:
    """Issues, lists and revokes keys in ``keys.db``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "keys.db"

    def _connect(self) -> sqlite3.Connection:
        conn = open_database(self.path, check_same_thread=True)
        conn.executescript(SCHEMA)
        return conn

    def create(self, source: str, name: str, rate: float | None) -> tuple[ApiKey, str]:
        """Issue a key; the second value is the key itself, to show once."""
        key = "hr_" + secrets.token_urlsafe(32)
        now = time.time_ns() // 1000
        with self._connect() as conn:
            cursor = conn.execute(
                "INSERT INTO api_keys (source, name, hash, prefix, rate, created_at_us) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (source, name, hash_key(key), key[:10], rate, now),
            )
            key_id = int(cursor.lastrowid or 0)
        return ApiKey(key_id, source, name, key[:10], rate, now, None), key

    def list(self, source: str | None = None) -> list[ApiKey]:
        """Every key, oldest first."""
        sql = "SELECT id, source, name, prefix, rate, created_at_us, revoked_at_us FROM api_keys"
        args: tuple[str, ...] = ()
        if source:
            sql, args = sql + " WHERE source = ?", (source,)
        with self._connect() as conn:
            return [ApiKey(*row) for row in conn.execute(sql + " ORDER BY id", args)]

    def revoke(self, key_id: int) -> bool:
        """Revoke a key; ``False`` if there is no such live key."""
        with self._connect() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at_us = ? WHERE id = ? AND revoked_at_us IS NULL",
                (time.time_ns() // 1000, key_id),
            )
            return cursor.rowcount == 1

    def live_hashes(self, source: str) -> dict[str, ApiKey]:
        """The source's live keys by hash (what ingest checks against)."""
        if not self.path.exists():
            return {}
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute(
                "SELECT hash, id, source, name, prefix, rate, created_at_us, revoked_at_us "
                "FROM api_keys WHERE source = ? AND revoked_at_us IS NULL",
                (source,),
            ).fetchall()
        except sqlite3.OperationalError:
            return {}
        finally:
            conn.close()
        return {row[0]: ApiKey(*row[1:]) for row in rows}
