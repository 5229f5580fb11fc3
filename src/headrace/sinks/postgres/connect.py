"""Connections to PostgreSQL, for the sink and for exports.

Every connection gets the same settings: UTF-8 as the client encoding (the server converts, and
refuses a character its encoding lacks with a data error that fails one row), TCP keepalives
and a TCP user timeout (a database host that silently drops packets fails a write within about a
minute instead of hanging it for the kernel's quarter of an hour), and our JSON encoder.

Error messages never show a password: libpq's own messages name host and port only, but a DSN
it cannot parse is quoted back (``invalid percent-encoded token: "s3cr%zzet"``), so such errors
get a fixed message, and any password that still appears is masked.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import msgspec

from headrace.errors import PoolBusy, TransientSinkError

TCP_USER_TIMEOUT_MS = 60_000
_SETTINGS = {
    "client_encoding": "utf8",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
}
BAD_DSN = (
    "the dsn is not a valid libpq connection string or URL "
    "(in a URL, a % must start an escape: write %25 for a % in a password)"
)


def dsn_problem(dsn: str) -> str | None:
    """Why ``dsn`` cannot be used (without quoting any of it), or ``None``."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except Exception:
        return BAD_DSN
    return None


def describe(exc: BaseException, dsn: str) -> str:
    """The first line of a connection error, with no password in it."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:
        return BAD_DSN
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    for secret in (password, os.environ.get("PGPASSWORD")):
        if secret:
            text = text.replace(str(secret), "***")
    return text


def connect(dsn: str, connect_timeout: float, **settings: Any) -> Any:
    """A new connection with headrace's settings; ``TransientSinkError`` (with a message that
    shows no password) when there is none to be had."""
    import psycopg
    from psycopg.types.json import set_json_dumps

    try:
        conn = psycopg.connect(
            dsn, connect_timeout=max(2, int(connect_timeout)), **{**_SETTINGS, **settings}
        )
    except psycopg.Error as exc:
        raise TransientSinkError(f"cannot connect to PostgreSQL: {describe(exc, dsn)}") from exc
    set_json_dumps(msgspec.json.encode, conn)  # jsonb values, in C
    return conn


class ConnectionPool:
    """At most ``size`` open connections, each made when first wanted. A broken one is dropped
    rather than repaired, so after an outage the next write simply connects again (there is no
    reconnect loop whose backoff would have to run out first)."""

    def __init__(self, dsn: str, size: int, connect_timeout: float) -> None:
        self._dsn = dsn
        self._size = size
        self._connect_timeout = connect_timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self, wait: float | None = None, fresh: bool = False) -> Iterator[Any]:
        """A connection for the block (a new one if ``fresh``); ``TransientSinkError`` if none
        is free within ``wait`` seconds (default: the connect timeout) or the database cannot
        be reached."""
        import psycopg

        if not self._slots.acquire(timeout=self._connect_timeout if wait is None else wait):
            raise PoolBusy(f"all {self._size} PostgreSQL connection(s) are busy")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle and not fresh else None
            if conn is None or conn.closed or conn.broken:
                conn = connect(self._dsn, self._connect_timeout)
            yield conn
        finally:
            if conn is not None:
                idle = psycopg.pq.TransactionStatus.IDLE
                if conn.closed or conn.broken or conn.info.transaction_status != idle:
                    with contextlib.suppress(Exception):
                        conn.close()
                else:
                    with self._lock:
                        self._idle.append(conn)
            self._slots.release()

    def describe(self, exc: BaseException) -> str:
        """``exc`` as one line that shows no password."""
        return describe(exc, self._dsn)

    def close(self) -> None:
        """Close the idle connections (one in use is closed when it comes back broken, or by
        the next ``close``)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
