"""CSV export from a PostgreSQL sink, streamed with ``COPY (SELECT …) TO STDOUT``.

Filters name columns that exist in the table (checked first) and identifiers go through
``psycopg.sql.Identifier``. COPY takes no parameters, so filter values are bound another way:
each is set as a session setting with a bound ``set_config(…, %s, false)`` and the query reads
it back with ``current_setting(…)`` cast to the column's own type. No value is ever part of the
SQL text, and the comparison can use the column's indexes. The header row uses the configured
names; records end in LF, as PostgreSQL writes them, and the bytes pass through untouched (a
newline inside a quoted field is data).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from types import TracebackType
from typing import Any, BinaryIO

from headrace.query.lake import FORMULA_START, QueryError
from headrace.sinks.postgres.config import PostgresConfig

NUMERIC_TYPES = frozenset(
    {"smallint", "integer", "bigint", "real", "double precision", "numeric", "boolean"}
)


def _time_value(us: int, unit: str) -> str:
    from datetime import UTC, datetime

    if unit == "epoch_ms":
        return str(us // 1000)
    if unit == "epoch_s":
        return str(us // 1_000_000)
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat()


class PostgresExport:
    """One export of a postgres sink's table: ``with PostgresExport(…) as export:`` connects
    and checks the filters; ``count`` and ``write_csv`` then run on that connection."""

    def __init__(
        self,
        config: PostgresConfig,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        where: list[tuple[str, str]] | None = None,
        safe: bool = False,
    ) -> None:
        self.config = config
        # text cells a spreadsheet would run as formulas get a leading ' (see lake.FORMULA_START)
        self.safe = safe
        self.since_us = since_us
        self.until_us = until_us
        self.where = where or []
        self._conn: Any = None
        self._selection: Any = None
        self._headers: list[str] = []
        self._bound: list[tuple[str, str, str]] = []
        self._types: dict[str, str] = {}

    def __enter__(self) -> PostgresExport:
        from headrace.errors import TransientSinkError
        from headrace.sinks.postgres.connect import connect

        dsn = self.config.dsn.get_secret_value() if self.config.dsn else ""
        try:
            self._conn = connect(dsn, self.config.connect_timeout, autocommit=True)
        except TransientSinkError as exc:  # its message shows no password
            raise QueryError("unavailable", str(exc)) from exc
        try:
            self._selection = self._select()
        except BaseException:
            self._conn.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._conn.close()

    def _select(self) -> Any:
        from psycopg import sql

        config = self.config
        conn = self._conn
        # the type without its modifier: a cast to varchar(4) or numeric(6,1) would cut or
        # round the filter value and match rows it should not
        types = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum",
                (sql.Identifier(config.schema_name, config.table).as_string(conn),),
            ).fetchall()
        )
        if not types:
            raise QueryError("no_table", f"{config.schema_name}.{config.table} does not exist yet")
        # default: the declared columns, or (a ddl table) every column but headrace's own
        default = config.columns or {n: n for n in types if not n.startswith("_")}
        headers = config.export.columns or {name: name for name in default}
        time_column = config.export.time_column
        for name in [*headers, *(n for n, _ in self.where), time_column]:
            if name not in types:
                raise QueryError("unknown_column", f'the table has no column "{name}"')
        conditions = []
        bound: list[tuple[str, str, str]] = [
            (name, value, "=") for name, value in self.where
        ]  # fmt: skip
        unit = config.export.time_unit
        if self.since_us is not None:
            bound.append((time_column, _time_value(self.since_us, unit), ">="))
        if self.until_us is not None:
            bound.append((time_column, _time_value(self.until_us, unit), "<"))
        # times given without a zone are UTC; every value is bound, all in one round trip
        settings: list[str] = ["TimeZone", "UTC"]
        for n, (name, value, op) in enumerate(bound):
            setting = f"headrace.filter_{n}"
            if "\x00" in value:
                raise QueryError("bad_value", f'"{name}": a value cannot hold a NUL character')
            settings += [setting, value]
            conditions.append(
                sql.SQL("{} {} CAST(current_setting({}) AS {})").format(
                    sql.Identifier(name), sql.SQL(op), sql.Literal(setting), sql.SQL(types[name])
                )
            )
        calls = ", ".join(["set_config(%s, %s, false)"] * (len(settings) // 2))
        conn.execute(f"SELECT {calls}", settings)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(self._output(name, types[name]) for name in headers),
            sql.Identifier(config.schema_name, config.table),
        )
        if conditions:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
        self._headers = list(headers.values())
        self._bound = bound
        self._types = types
        return query

    def _output(self, name: str, kind: str) -> Any:
        """The select-list entry of one column: the column, or with ``safe`` its text with a
        quote mark before a leading = + - @ tab or CR. Numbers stay as they are (a negative
        number is no formula). Not aliased, so ORDER BY still sorts by the column itself."""
        from psycopg import sql

        column = sql.Identifier(name)
        if not self.safe or kind in NUMERIC_TYPES:  # format_type gives plain "numeric"
            return column
        # the same first characters the lake export guards (one list, so they cannot drift)
        return sql.SQL(
            "CASE WHEN left({c}::text, 1) = ANY({s}) THEN '''' || {c}::text ELSE {c}::text END"
        ).format(c=column, s=sql.Literal(list(FORMULA_START)))

    def _run(self, action: Callable[[], Any]) -> Any:
        """Run ``action``, turning a filter value the column's type refuses into a clear
        error."""
        import psycopg

        try:
            return action()
        except psycopg.errors.DataError as exc:
            detail = str(exc).strip().splitlines()[0]
            names = ", ".join(f"{name} ({self._types[name]})" for name, _, _ in self._bound)
            raise QueryError(
                "bad_value", f"a filter value does not fit its column [{names}]: {detail}"
            ) from exc

    def count(self) -> int:
        """How many rows the export will write."""
        from psycopg import sql

        query = sql.SQL("SELECT count(*) FROM ({}) AS selection").format(self._selection)
        row = self._run(lambda: self._conn.execute(query).fetchone())
        return int(row[0]) if row else 0

    def write_csv(self, out: BinaryIO, progress: Callable[[int], None] | None = None) -> int:
        """Write the header row and the selected rows, oldest first; returns the rows
        written. ``progress`` hears about every chunk (its count of line ends)."""
        from psycopg import sql

        header = io.StringIO()
        # written with CRLF so that a name holding a bare CR is quoted too (the csv module
        # quotes only the line terminator's characters), then ended in LF like the rows
        csv.writer(header, lineterminator="\r\n").writerow(self._headers)
        out.write(header.getvalue().removesuffix("\r\n").encode("utf-8") + b"\n")
        query = sql.SQL("COPY ({} ORDER BY {}) TO STDOUT (FORMAT csv)").format(
            self._selection, sql.Identifier(self.config.export.time_column)
        )

        def copy_out() -> int:
            cursor = self._conn.cursor()
            with cursor.copy(query) as copy:
                for chunk in copy:
                    out.write(chunk)
                    if progress is not None:
                        progress(bytes(chunk).count(b"\n"))
            return int(cursor.rowcount)

        rows: int = self._run(copy_out)
        return rows
