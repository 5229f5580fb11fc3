"""The PostgreSQL sink: batches staged with COPY, then inserted once each.

Each batch is copied into a temporary table and inserted from there in one transaction:
``ON CONFLICT DO NOTHING`` (``_event_id`` is unique, so a redelivered event adds no row; in
``merge`` mode the ``dedupe_key`` index also keeps one row per key), or for ``on_conflict:
update``, replacing the stored row of a key. Every identifier goes through
``psycopg.sql.Identifier``; values are only ever bound or copied.

Errors: a lost connection or a serialization failure is transient (the runtime retries); a
batch PostgreSQL refuses for its data is split in halves until the refused rows are alone, and
those go to the dead-letter store while the rest is stored.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headrace.config.models import PostgresSink as PostgresConfig
from headrace.errors import TransientSinkError
from headrace.runtime.state import Checkpoint
from headrace.sinks.base import APPEND, MERGE
from headrace.types import Event, FailedRecord, WriteResult

log = logging.getLogger("headrace.sinks.postgres")

SYSTEM_COLUMNS = ("_event_id", "_received_at")
_INFER = {bool: "boolean", int: "bigint", float: "double precision", str: "text"}
_PLAIN_VALUES = frozenset({str, int, float, bool, type(None)})


class _Refused(Exception):
    """PostgreSQL refused a batch for its data (not for the connection)."""


class PostgresSink:
    """Stores batches in one PostgreSQL table; see the module docstring."""

    capabilities = frozenset({APPEND, MERGE})
    commits_checkpoint = False

    def __init__(self, sink_id: str, config: PostgresConfig, data_dir: Path) -> None:
        self.id = sink_id
        self.config = config
        self.columns: dict[str, str] = dict(config.columns)
        self._conn: Any = None
        self._error: str | None = None
        self._plain: frozenset[str] = frozenset()
        self._plain_for: dict[str, str] | None = None

    # -- connection and table ----------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            dsn = self.config.dsn.get_secret_value() if self.config.dsn else ""
            try:
                self._conn = psycopg.connect(dsn, connect_timeout=10)
            except psycopg.Error as exc:
                # the message names host and port, never the password
                raise TransientSinkError(
                    f"cannot connect to PostgreSQL: {_first_line(exc)}"
                ) from exc
            self._ensure_table(self._conn)
        return self._conn

    def _table(self) -> Any:
        from psycopg import sql

        return sql.Identifier(self.config.schema_name, self.config.table)

    def _ensure_table(self, conn: Any) -> None:
        from psycopg import sql

        columns = [
            sql.SQL("_event_id text NOT NULL UNIQUE"),
            sql.SQL("_received_at timestamptz NOT NULL"),
            sql.SQL("_created_at timestamptz NOT NULL DEFAULT now()"),
            *(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                for n, t in self.config.columns.items()
            ),
        ]
        if self.config.unknown_fields == "keep_json":
            columns.append(sql.SQL("_extra jsonb"))
        with conn.transaction():
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.config.schema_name)
                )
            )
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                    self._table(), sql.SQL(", ").join(columns)
                )
            )
            # columns declared after the table was made (a config change) are added
            wanted = {**self.config.columns, **dict.fromkeys(self.config.derived, "timestamptz")}
            for name, kind in wanted.items():
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        self._table(), sql.Identifier(name), sql.SQL(kind)
                    )
                )
            if self.config.dedupe_key:
                index = sql.Identifier(f"{self.config.table[:40]}_dedupe_key")
                conn.execute(
                    sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
                        index,
                        self._table(),
                        sql.SQL(", ").join(map(sql.Identifier, self.config.dedupe_key)),
                    )
                )
            rows = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (self.config.schema_name, self.config.table),
            ).fetchall()
        self.columns = {name: kind for name, kind in rows if not name.startswith("_")}

    @property
    def _plain_columns(self) -> frozenset[str]:
        columns = self.columns
        if self._plain_for is not columns:  # rebuilt only when the column map changes
            self._plain = frozenset(n for n, kind in columns.items() if kind != "jsonb")
            self._plain_for = columns
        return self._plain

    def open(self) -> None:
        """Connect and create the table if missing; a database that is down now is retried
        at each write (ingest goes on buffering, other sinks go on delivering)."""
        try:
            self._connect()
        except TransientSinkError as exc:
            self._error = str(exc)
            log.warning("sink %s: %s; will retry", self.id, exc)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def health(self) -> str | None:
        """Why the sink is unhealthy (its last write failed), or ``None``."""
        return self._error

    def maintain(self) -> None:
        """Nothing in the background."""

    # -- writing -----------------------------------------------------------------------------

    def _row(self, event: Event, new_columns: dict[str, str]) -> dict[str, Any] | str:
        from psycopg.types.json import Jsonb

        row: dict[str, Any] = {
            "_event_id": event.id,
            "_received_at": datetime.fromtimestamp(event.received_at_us / 1_000_000, tz=UTC),
        }
        extra: dict[str, Any] = {}
        plain = self._plain_columns
        for name, value in event.data.items():
            if name in plain and type(value) in _PLAIN_VALUES:
                row[name] = value  # the common case: a scalar for a non-JSON column
                continue
            kind = self.columns.get(name) or new_columns.get(name)
            if kind is None:
                policy = self.config.unknown_fields
                if policy == "freeze":
                    return f'field "{name}" is not a column of the table'
                if policy == "evolve" and not name.startswith("_") and len(name.encode()) <= 63:
                    kind = _INFER.get(type(value), "jsonb")
                    new_columns[name] = kind
                else:
                    extra[name] = value
                    continue
            row[name] = Jsonb(value) if kind == "jsonb" or isinstance(value, dict | list) else value
        for name, derived in self.config.derived.items():
            row[name] = _derived_time(event.data.get(derived.source), derived.unit)
        if self.config.unknown_fields == "keep_json":
            row["_extra"] = Jsonb(extra) if extra else None
        return row

    def write(self, events: list[Event], checkpoint: Checkpoint) -> WriteResult:
        """Store ``events``; refused rows come back in ``WriteResult.failed``."""
        import psycopg

        failed: list[FailedRecord] = []
        rows: list[tuple[Event, dict[str, Any]]] = []
        new_columns: dict[str, str] = {}
        for event in events:
            shaped = self._row(event, new_columns)
            if isinstance(shaped, str):
                failed.append(FailedRecord(event, "unknown_field", shaped))
            else:
                rows.append((event, shaped))
        try:
            conn = self._connect()
            if new_columns:
                self._add_columns(conn, new_columns)
            failed += self._insert_isolating(conn, rows)
        except (
            psycopg.OperationalError, psycopg.errors.SerializationFailure,
            psycopg.errors.DeadlockDetected, psycopg.InterfaceError,
            psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable,
        ) as exc:  # fmt: skip
            # a lost connection, or a table changed under us: reconnect (which recreates the
            # table and its columns, and the staging table) and retry
            self.close()
            self._error = f"PostgreSQL: {_first_line(exc)}"
            raise TransientSinkError(self._error) from exc
        self._error = None
        return WriteResult(failed)

    def _add_columns(self, conn: Any, new_columns: dict[str, str]) -> None:
        from psycopg import sql

        with conn.transaction():
            conn.execute("DROP TABLE IF EXISTS pg_temp._headrace_stage")  # recreated with them
            for name, kind in new_columns.items():
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        self._table(), sql.Identifier(name), sql.SQL(kind)
                    )
                )
        self.columns = {**self.columns, **new_columns}  # a new dict: cached views rebuild

    def _insert_isolating(
        self, conn: Any, rows: list[tuple[Event, dict[str, Any]]]
    ) -> list[FailedRecord]:
        """Insert ``rows``; on a data error split them until the refused rows are alone."""
        if not rows:
            return []
        try:
            self._insert(conn, [r for _, r in rows])
            return []
        except _Refused as exc:
            if len(rows) == 1:
                return [FailedRecord(rows[0][0], "rejected_by_database", str(exc))]
            middle = len(rows) // 2
            return self._insert_isolating(conn, rows[:middle]) + self._insert_isolating(
                conn, rows[middle:]
            )

    def _insert(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        import psycopg
        from psycopg import sql

        names = list(dict.fromkeys(name for row in rows for name in row))
        idents = sql.SQL(", ").join(map(sql.Identifier, names))
        if not (self.config.dedupe_key and self.config.on_conflict == "update"):
            # Most batches hold only new events: COPY them straight in. A unique violation
            # (a redelivery, a duplicate key) rolls that back and takes the staged path,
            # which skips what is stored.
            try:
                with conn.transaction():
                    _copy_rows(conn, self._table(), idents, names, rows)
                return
            except psycopg.errors.UniqueViolation:
                pass
            except _data_errors() as exc:
                raise _Refused(_first_line(exc)) from exc
        stage = sql.Identifier("_headrace_stage")
        key = self.config.dedupe_key
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    ).format(stage, self._table())
                )
                _copy_rows(conn, stage, idents, names, rows)
                if key and self.config.on_conflict == "update":
                    # events already stored (a redelivery) must not update their row again; in
                    # the other modes ON CONFLICT DO NOTHING skips them (_event_id is unique)
                    conn.execute(sql.SQL("DELETE FROM {s} USING {t} WHERE {t}._event_id = {s}._event_id").format(
                        s=stage, t=self._table()))  # fmt: skip
                    keys = sql.SQL(", ").join(map(sql.Identifier, key))
                    updates = sql.SQL(", ").join(
                        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                        for n in names if n not in key
                    )  # fmt: skip
                    conn.execute(sql.SQL(
                        "INSERT INTO {t} ({c}) SELECT DISTINCT ON ({k}) {c} FROM {s} ORDER BY {k}, _received_at DESC "
                        "ON CONFLICT ({k}) DO UPDATE SET {u}"
                    ).format(t=self._table(), c=idents, s=stage, k=keys, u=updates))  # fmt: skip
                else:
                    conn.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT DO NOTHING").format(
                        t=self._table(), c=idents, s=stage))  # fmt: skip
        except _data_errors() as exc:
            raise _Refused(_first_line(exc)) from exc


def _copy_rows(
    conn: Any, table: Any, idents: Any, names: list[str], rows: list[dict[str, Any]]
) -> None:
    """COPY the ``names`` columns of ``rows`` into ``table``."""
    from psycopg import sql

    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, idents)) as copy:
        for row in rows:
            copy.write_row([row.get(name) for name in names])


def _data_errors() -> tuple[type[Exception], ...]:
    """The errors with which PostgreSQL refuses a batch for its data (psycopg is imported late)."""
    import psycopg

    return (psycopg.errors.DataError, psycopg.errors.IntegrityError,
            psycopg.errors.InvalidTextRepresentation)  # fmt: skip


def _derived_time(value: Any, unit: str) -> datetime | None:
    """A time field as a timestamp, or ``None`` when it is missing or not one."""
    from headrace.sinks.lake_catalog import parse_time_us

    us = parse_time_us(value, unit)
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
