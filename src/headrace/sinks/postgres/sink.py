"""The PostgreSQL sink: batches COPY'd into one table, stored once each.

A batch of new events is COPY'd straight into the table: binary when every value has the exact
type of its column, text otherwise (``pg_copy``). When that meets a unique violation (a
redelivery, or in ``merge`` mode a key that is stored already) it is rolled back and the batch
goes through a temporary table instead, inserted from there with ``ON CONFLICT DO NOTHING``, or
for ``on_conflict: update`` with ``DO UPDATE`` from the batch's latest row of each key, and only
over an older row. The table's indexes make a redelivered event add no row whatever the mode
(``pg_table``). Every identifier goes through ``psycopg.sql.Identifier``; values are only ever
copied or bound.

Connections come from a small pool (``pg_connect``): the delivery thread writes on one, and a
probe every few seconds on another keeps ``health`` (and so ``/readyz``) true to the database
even while no events arrive.

Errors: a lost connection, a serialization failure or a deadlock is transient (the runtime
retries); a batch PostgreSQL refuses for its data is split in halves until the refused rows are
alone, and those go to the dead-letter store while the rest is stored. A binary batch first
checks (under the table's lock) that no column changed type since the table was read: binary
values are not parsed, so a changed type must never meet them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from headrace.drivers.postgres import connection_errors, data_errors
from headrace.errors import PoolBusy, TransientSinkError
from headrace.sinks.base import APPEND, MERGE
from headrace.sinks.postgres import copy as pg_copy
from headrace.sinks.postgres.config import PostgresConfig
from headrace.sinks.postgres.connect import ConnectionPool, describe
from headrace.sinks.postgres.table import SYSTEM_TYPES, PostgresTable
from headrace.storage.lake_catalog import parse_time_us
from headrace.storage.state import Checkpoint
from headrace.types import Event, FailedRecord, WriteResult

log = logging.getLogger("headrace.sinks.postgres")

_INFER = {bool: "boolean", int: "bigint", float: "double precision", str: "text"}
COPY_CHUNK = 1000
"""Text rows sent at a time."""
PROBE_EVERY = 5.0
"""Seconds between health probes of the database."""


class _Refused(Exception):
    """PostgreSQL refused a batch for its data (not for the connection)."""


class _TableChanged(Exception):
    """A column's type is not the one the batch was encoded for."""


class PostgresSink:
    """Stores batches in one PostgreSQL table; see the module docstring."""

    commits_checkpoint = False

    def __init__(self, sink_id: str, config: PostgresConfig, data_dir: Path) -> None:
        self.id = sink_id
        # what this table's config makes of it: merge keeps one row per dedupe_key
        self.capabilities = frozenset({APPEND, MERGE} if config.write_mode == "merge" else {APPEND})
        self.config = config
        self.table = PostgresTable(config)
        self.columns: dict[str, str] = dict(config.columns)
        """The table's columns (but headrace's own) and their types, as the database says."""
        self._known: frozenset[str] = frozenset(self.columns)
        self._ready = False
        self._write_error: str | None = None
        self._open_failed = False  # open could not make the table ready (not a failed write)
        self._ensure_lock = threading.Lock()  # the probe and a write may both make it ready
        self._probe_error: str | None = None
        self._probed = 0.0
        dsn = config.dsn.get_secret_value() if config.dsn else ""
        self._pool = ConnectionPool(dsn, config.pool_size, config.connect_timeout)

    # -- table -------------------------------------------------------------------------------

    def _ensure_table(self, conn: Any) -> None:
        with self._ensure_lock:
            if self._ready:
                return
            self.table.ensure(conn)
            self.columns = self.table.user_columns
            self._known = frozenset(self.columns)
            self._ready = True
            self._open_failed = False

    def _add_columns(self, conn: Any, new_columns: dict[str, str]) -> None:
        with conn.transaction():
            self.table.add_columns(conn, new_columns)
            self.table.types = self.table.read_types(conn)
        self.columns = self.table.user_columns
        self._known = frozenset(self.columns)

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Connect and make the table ready; a failure now (the database down, a bad ``ddl``)
        is recorded and met again at each write, so ingest goes on buffering and other sinks
        go on delivering."""
        try:
            with self._pool.connection() as conn:
                self._ensure_table(conn)
        except Exception as exc:
            self._write_error = self._describe(exc)
            self._open_failed = True
            log.warning("sink %s: %s; will retry at each write", self.id, self._write_error)

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()

    def health(self) -> str | None:
        """Why the sink is unhealthy (the database cannot be reached, or the last write
        failed), or ``None``."""
        return self._probe_error or self._write_error

    def maintain(self) -> None:
        """Probe the database every few seconds, so health follows it between writes (a
        failed write stays reported until a write succeeds). A table that could not be made
        ready at open is made ready here once the database answers, so a sink that started
        during an outage turns healthy without waiting for traffic."""
        now = time.monotonic()
        if now - self._probed < PROBE_EVERY:
            return
        self._probed = now
        for fresh in (False, True):  # a pooled connection may predate a server restart
            try:
                with self._pool.connection(wait=0.5, fresh=fresh) as conn:
                    conn.execute("SELECT 1")
                    conn.rollback()
            except PoolBusy:  # a write holds every connection: it reports itself
                return
            except TransientSinkError as exc:
                self._probe_error = str(exc)
            except Exception as exc:
                self._probe_error = f"PostgreSQL: {self._describe(exc)}"
            else:
                self._probe_error = None
                if self._open_failed:
                    self._ready_after_outage()
                return

    def _ready_after_outage(self) -> None:
        try:
            with self._pool.connection(wait=0.5) as conn:
                self._ensure_table(conn)
        except PoolBusy:
            pass  # the write holding the connections makes the table ready itself
        except TransientSinkError as exc:
            self._write_error = str(exc)
        except Exception as exc:
            self._write_error = f"PostgreSQL: {self._describe(exc)}"
        else:
            self._write_error = None

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TransientSinkError):
            return str(exc)
        return self._pool.describe(exc)

    # -- writing -----------------------------------------------------------------------------

    def write(self, events: list[Event], checkpoint: Checkpoint) -> WriteResult:
        """Store ``events``; refused rows come back in ``WriteResult.failed``."""
        failed: list[FailedRecord] = []
        try:
            with self._pool.connection() as conn:
                if not self._ready:
                    self._ensure_table(conn)
                accepted, extras, new_columns, present = self._sort_fields(events, failed)
                if new_columns:
                    self._add_columns(conn, new_columns)
                failed += self._store(conn, self._names(present), accepted, extras)
        except TransientSinkError as exc:
            self._write_error = str(exc)
            raise
        except _TableChanged as exc:
            self._ready = False  # the retry reads the table again and encodes for it
            self._write_error = f"PostgreSQL: {exc}"
            raise TransientSinkError(self._write_error) from exc
        except connection_errors() as exc:
            # a lost connection, or a table changed under us: the retry reconnects and
            # makes the table ready again
            self._ready = False
            self._write_error = f"PostgreSQL: {self._describe(exc)}"
            raise TransientSinkError(self._write_error) from exc
        self._write_error = None
        return WriteResult(failed)

    def _sort_fields(
        self, events: list[Event], failed: list[FailedRecord]
    ) -> tuple[list[Event], dict[int, dict[str, Any]], dict[str, str], set[str]]:
        """The events to store, the fields of each kept as JSON (by position), the columns to
        add, and the fields the batch has; events ``freeze`` refuses, and under ``evolve`` those
        with a field no column can be named for, go to ``failed``."""
        present: set[str] = set()
        for event in events:
            present.update(event.data)
        known = self._known
        if present <= known:  # the common case: every field of every event is a column
            return events, {}, {}, present
        accepted: list[Event] = []
        extras: dict[int, dict[str, Any]] = {}
        new_columns: dict[str, str] = {}
        policy = self.config.unknown_fields
        for event in events:
            data = event.data
            if data.keys() <= known:
                accepted.append(event)
                continue
            unknown = [name for name in data if name not in known]
            if policy == "freeze":
                message = f'field "{unknown[0]}" is not a column of the table'
                failed.append(FailedRecord(event, "unknown_field", message))
                continue
            if policy == "evolve":
                unfit = next(((n, why) for n in unknown if (why := _why_unfit(n))), None)
                if unfit is not None:  # evolve has no _extra column to keep it in
                    message = f'field "{unfit[0][:80]}" cannot become a column: {unfit[1]}'
                    failed.append(FailedRecord(event, "unknown_field", message))
                    continue
                for name in unknown:
                    new_columns.setdefault(name, _INFER.get(type(data[name]), "jsonb"))
                accepted.append(event)
                continue
            extra = {name: data[name] for name in unknown}
            if extra:
                extras[len(accepted)] = extra
            accepted.append(event)
        return accepted, extras, new_columns, present

    def _names(self, present: set[str]) -> list[str]:
        """The columns a batch fills: headrace's, those of the fields it has (a column no
        event has is left out, so its default applies), the derived ones and ``_extra``."""
        names = ["_event_id", "_received_at"]
        names += [n for n in self.columns if n in present and n not in self.config.derived]
        names += self.config.derived
        if self.config.unknown_fields == "keep_json":
            names.append("_extra")
        return names

    def _columns(
        self, names: list[str], events: list[Event], extras: dict[int, dict[str, Any]]
    ) -> list[pg_copy.Column]:
        """The batch a column at a time: each column's kind and values."""
        datas = [event.data for event in events]
        columns: list[pg_copy.Column] = [
            ("text", [event.id for event in events]),
            (pg_copy.TIMESTAMP_US, [event.received_at_us for event in events]),
        ]
        derived = self.config.derived
        for name in names[2:]:
            if name in derived:
                rule = derived[name]
                times = [parse_time_us(data.get(rule.source), rule.unit) for data in datas]
                columns.append((pg_copy.TIMESTAMP_US, times))
            elif name == "_extra":
                columns.append(("jsonb", [extras.get(n) for n in range(len(events))]))
            else:
                columns.append((self.columns[name], list(map(dict.get, datas, repeat(name)))))
        return columns

    def _store(
        self, conn: Any, names: list[str], events: list[Event], extras: dict[int, dict[str, Any]]
    ) -> list[FailedRecord]:
        """Store a batch; refused rows come back."""
        columns = self._columns(names, events, extras)
        if all(pg_copy.binary_ok(kind, values) for kind, values in columns):
            types = pg_copy.binary_types(columns)
            batch = _Encoded(names, types, pg_copy.binary_rows(columns))
        else:
            batch = _Encoded(names, None, pg_copy.text_rows(columns))
        return self._insert_isolating(conn, batch, events)

    def _insert_isolating(
        self, conn: Any, batch: _Encoded, events: list[Event]
    ) -> list[FailedRecord]:
        """Insert ``batch``; on a data error split it until the refused rows are alone."""
        if not batch.rows:
            return []
        try:
            self._insert(conn, batch)
            return []
        except _Refused as exc:
            return self._isolate(conn, batch, events, exc)

    def _isolate(
        self, conn: Any, batch: _Encoded, events: list[Event], exc: _Refused
    ) -> list[FailedRecord]:
        """Rows refused together: the one refused row, or each half tried on its own."""
        rows = batch.rows
        if len(rows) == 1:
            return [FailedRecord(events[0], "rejected_by_database", str(exc))]
        middle = len(rows) // 2
        return self._insert_isolating(
            conn, batch.part(0, middle), events[:middle]
        ) + self._insert_isolating(conn, batch.part(middle, None), events[middle:])

    def _check_types(self, conn: Any, batch: _Encoded) -> None:
        """For a binary batch: lock the table for writing (as COPY would) and check that no
        column it fills changed type since the table was read."""
        if batch.types is None:
            return
        from psycopg import sql

        conn.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(self.table.ident()))
        now = self.table.read_types(conn)
        expected = {**self.table.types, **SYSTEM_TYPES}
        changed = [n for n in batch.names if now.get(n) != expected.get(n)]
        if changed:
            raise _TableChanged(
                f"column {changed[0]} of {self.config.schema_name}.{self.config.table} is now "
                f"{now.get(changed[0], 'gone')}"
            )

    def _insert(self, conn: Any, batch: _Encoded) -> None:
        """COPY ``batch`` in; on a unique violation, through the staging table instead."""
        import psycopg
        from psycopg import sql

        names = batch.names
        idents = sql.SQL(", ").join(map(sql.Identifier, names))
        key = self.config.dedupe_key
        updating = bool(key) and self.config.on_conflict == "update"
        if not updating:
            # Most batches hold only new events: COPY them straight in. A unique violation
            # (a redelivery, a duplicate key) rolls that back and takes the staged path,
            # which skips what is stored.
            try:
                with conn.transaction():
                    self._check_types(conn, batch)
                    _copy(conn, self.table.ident(), idents, batch)
                return
            except psycopg.errors.UniqueViolation:
                pass
            except data_errors() as exc:
                raise _Refused(_first_line(exc)) from exc
        stage = sql.Identifier("_headrace_stage")
        table = self.table.ident()
        try:
            with conn.transaction():
                self._check_types(conn, batch)
                # dropped at commit, so it always has the table's current columns
                conn.execute(sql.SQL(
                    "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP"
                ).format(stage, table))  # fmt: skip
                _copy(conn, stage, idents, batch)
                if updating:
                    # events already stored (a redelivery) must not update their row again; in
                    # the other modes ON CONFLICT DO NOTHING skips them
                    conn.execute(sql.SQL("DELETE FROM {s} USING {t} WHERE {t}._event_id = {s}._event_id").format(
                        s=stage, t=table))  # fmt: skip
                    keys = sql.SQL(", ").join(map(sql.Identifier, key))
                    updates = sql.SQL(", ").join(
                        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                        for n in names if n not in key
                    )  # fmt: skip
                    conn.execute(sql.SQL(
                        "INSERT INTO {t} ({c}) SELECT DISTINCT ON ({k}) {c} FROM {s} "
                        "ORDER BY {k}, _received_at DESC, _event_id DESC "
                        "ON CONFLICT ({k}) DO UPDATE SET {u} "
                        # the latest event wins, also against a late redelivery of an older one
                        "WHERE ({t}._received_at, {t}._event_id) <= (EXCLUDED._received_at, EXCLUDED._event_id)"
                    ).format(t=table, c=idents, s=stage, k=keys, u=updates))  # fmt: skip
                else:
                    conn.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT DO NOTHING").format(
                        t=table, c=idents, s=stage))  # fmt: skip
        except data_errors() as exc:
            raise _Refused(_first_line(exc)) from exc


@dataclass
class _Encoded:
    """A batch (or part of one) as COPY rows: tuples for binary ``write_row`` with ``types``,
    or text lines when ``types`` is ``None``. Made whole before the COPY (in C, by ``zip``), so
    a second try, or a half after a split, has every row."""

    names: list[str]
    types: list[str] | None
    rows: list[Any] = field(default_factory=list)

    def part(self, start: int, stop: int | None) -> _Encoded:
        return _Encoded(self.names, self.types, self.rows[start:stop])


def _copy(conn: Any, table: Any, idents: Any, batch: _Encoded) -> None:
    """COPY ``batch`` into the ``idents`` columns of ``table``."""
    from psycopg import sql

    binary = batch.types is not None
    query = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        table, idents, sql.SQL(" (FORMAT binary)" if binary else "")
    )
    with conn.cursor().copy(query) as copy:
        if batch.types is not None:
            copy.set_types(batch.types)
            write_row = copy.write_row  # psycopg's C dumpers; sent in 32 KiB pieces as it goes
            for row in batch.rows:
                write_row(row)
        else:
            for start in range(0, len(batch.rows), COPY_CHUNK):
                copy.write(pg_copy.text_payload(batch.rows[start : start + COPY_CHUNK]))


def _why_unfit(name: str) -> str | None:
    """Why ``evolve`` cannot add a column named ``name`` (or ``None``: it can)."""
    if name.startswith("_"):
        return 'names starting with "_" are headrace\'s'
    if "\x00" in name or not name:
        return "empty, or holds NUL"
    if len(name.encode()) > 63:
        return "longer than PostgreSQL's 63 bytes"
    return None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def healthcheck(config: PostgresConfig) -> str | None:
    """Connect and check the table's schema can be used (nothing is written)."""
    from headrace.sinks.postgres.connect import connect

    dsn = config.dsn.get_secret_value() if config.dsn else ""
    try:
        conn = connect(dsn, config.connect_timeout)
    except TransientSinkError as exc:
        return str(exc)
    try:
        row = conn.execute(
            "SELECT has_schema_privilege(n.oid, 'CREATE') OR EXISTS (SELECT 1 FROM pg_tables "
            "WHERE schemaname = %s AND tablename = %s), n.oid IS NOT NULL FROM (SELECT 1) one "
            "LEFT JOIN pg_namespace n ON n.nspname = %s",
            (config.schema_name, config.table, config.schema_name),
        ).fetchone()
    except Exception as exc:
        return f"PostgreSQL: {describe(exc, dsn)}"
    finally:
        conn.close()
    if row is None or not row[1]:
        return f'schema "{config.schema_name}" does not exist'
    if not row[0]:
        return f'cannot create table "{config.table}" in schema "{config.schema_name}"'
    return None
