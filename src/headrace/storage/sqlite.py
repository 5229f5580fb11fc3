"""Opening headrace's SQLite databases (state, bad rows, keys, load history): WAL, waits on locks.

Two processes opening a new database at the same moment both try to switch it to WAL, which
needs the file to themselves; SQLite answers one of them ``database is locked`` at once instead
of waiting (the busy handler is not called, as waiting could deadlock). So the switch is made
under an exclusive ``flock`` on ``<database>.init-lock``, only while the database is not yet in
WAL mode (the mode is kept in the file: every later open just reads it). The lock is a file of
its own because closing any descriptor of the database itself would drop SQLite's own locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

BUSY_TIMEOUT_MS = 30_000


def open_database(
    path: Path,
    *,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
    check_same_thread: bool = False,
) -> sqlite3.Connection:
    """A read-write connection in autocommit mode (transactions are explicit) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        with _exclusive(path.with_name(path.name + ".init-lock")):
            conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that can only read ``path`` (which must exist)."""
    conn = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


__all__ = ["BUSY_TIMEOUT_MS", "open_database", "open_readonly"]
