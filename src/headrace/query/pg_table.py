"""Dashboard reads of a PostgreSQL sink's table, in SQL: counts over time (optionally grouped),
top values, recent events page by page, and arrivals per minute.

The table's time is the one ``headrace export --sink`` uses (``export.time_column`` in
``export.time_unit``; ``_received_at`` by default). Field names are matched against the table's
columns and passed as ``psycopg.sql.Identifier``; a field without a column is read from
``_extra`` (``keep_json``) by a bound key. Values are always bound parameters.

Every query here runs with parameters, and psycopg then reads each ``%`` of the query's text as
a placeholder, inside a quoted name too: names go through ``_ident``, which doubles their ``%``
(a table ``100%`` would otherwise fail every query, and one named ``a%%b`` read ``a%b``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from headrace.query.lake import (
    URL_HOST_PATTERN,
    LakeQuery,
    QueryError,
    _decode_cursor,
    _encode_cursor,
    iso,
)
from headrace.query.summary import Dimension, Summary, decode, grouping_sql
from headrace.sinks.postgres.config import PostgresConfig

SYSTEM = ("_event_id", "_received_at", "_created_at", "_extra")


def _ident(*names: str) -> Any:
    """``sql.Identifier(*names)`` for a query run with parameters (see the module docstring)."""
    from psycopg import sql

    return sql.Identifier(*(name.replace("%", "%%") for name in names))


class PgTable:
    """One PostgreSQL sink's table, for a few dashboard queries on one connection."""

    def __init__(self, config: PostgresConfig) -> None:
        from psycopg import sql

        from headrace.errors import TransientSinkError
        from headrace.sinks.postgres.connect import connect

        self.config = config
        self.sql = sql
        dsn = config.dsn.get_secret_value() if config.dsn else ""
        try:  # a page waits on this: at most 5 s, not the sink's own connect timeout
            self.conn = connect(dsn, min(config.connect_timeout, 5.0), autocommit=True)
        except TransientSinkError as exc:  # its message shows no password
            raise QueryError("sink_unreachable", str(exc), status=503) from exc
        self.table = _ident(config.schema_name, config.table)
        # the table's name as to_regclass reads it: a bound value, where a % is just a %
        self.regclass = sql.Identifier(config.schema_name, config.table).as_string(self.conn)
        self.columns: dict[str, str] = {
            name: kind
            for name, kind in self.conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (config.schema_name, config.table),
            )
        }
        self.time_column = config.export.time_column
        if self.columns and self.time_column not in self.columns:
            raise QueryError("unknown_column", f'the table has no column "{self.time_column}"')

    def close(self) -> None:
        self.conn.close()

    @property
    def exists(self) -> bool:
        return bool(self.columns)

    def user_columns(self) -> dict[str, str]:
        """The table's own columns (headrace's ``_`` columns aside) and their SQL types."""
        return {n: k for n, k in self.columns.items() if n not in SYSTEM}

    # -- SQL pieces ----------------------------------------------------------------------------

    def _time_us(self) -> Any:
        sql, column = self.sql, _ident(self.time_column)
        unit = self.config.export.time_unit
        if unit == "epoch_ms":
            return sql.SQL("({} * 1000)::bigint").format(column)
        if unit == "epoch_s":
            return sql.SQL("({} * 1000000)::bigint").format(column)
        return sql.SQL("(extract(epoch FROM {}) * 1000000)::bigint").format(column)

    def _time_value(self, us: int) -> Any:
        unit = self.config.export.time_unit
        if unit == "epoch_ms":
            return us // 1000
        if unit == "epoch_s":
            return us // 1_000_000
        return datetime.fromtimestamp(us / 1_000_000, tz=UTC)

    def _field(self, name: str, args: list[Any]) -> Any:
        """A field's value as text: its column, else its key in ``_extra``."""
        sql = self.sql
        if name in self.columns and name not in ("_extra", "_created_at"):
            return sql.SQL("CAST({} AS text)").format(_ident(name))
        if "_extra" in self.columns:
            args.append(name)
            return sql.SQL("(_extra ->> %s)")
        return sql.SQL("CAST(NULL AS text)")

    def _host(self, text: Any, args: list[Any]) -> Any:
        """The host of the URL in ``text`` (as ``query.lake.host_sql``), NULL if none."""
        args.append(URL_HOST_PATTERN)
        return self.sql.SQL(
            "nullif(regexp_replace(lower(substring({} from %s)), '^www[.]', ''), '')"
        ).format(text)

    def _where(self, q: LakeQuery, args: list[Any], extra: Any = None) -> Any:
        """`` WHERE …`` for the selection (plus ``extra``, a condition), or nothing."""
        sql = self.sql
        column = _ident(self.time_column)
        parts = []
        if q.since_us is not None:
            parts.append(sql.SQL("{} >= %s").format(column))
            args.append(self._time_value(q.since_us))
        if q.until_us is not None:
            parts.append(sql.SQL("{} < %s").format(column))
            args.append(self._time_value(q.until_us))
        for name, value in q.where:
            parts.append(sql.SQL("{} = %s").format(self._field(name, args)))
            args.append(value)
        for name, host in q.hosts:
            found = self._host(self._field(name, args), args)
            if host is None:
                parts.append(sql.SQL("{} IS NULL").format(found))
            else:
                parts.append(sql.SQL("{} = %s").format(found))
                args.append(host)
        for name, value in q.missing_or:
            first = self._field(name, args)  # each use binds its own arguments, in text order
            parts.append(sql.SQL("({} IS NULL OR {} = %s)").format(first, self._field(name, args)))
            args.append(value)
        if extra is not None:
            parts.append(extra)
        if not parts:
            return sql.SQL("")
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)

    # -- queries -------------------------------------------------------------------------------

    def counts(
        self, q: LakeQuery, bucket_us: int, group_by: str | None
    ) -> list[tuple[int, Any, int]]:
        """(bucket start µs, group value or None, count) rows."""
        sql = self.sql
        args: list[Any] = [bucket_us, bucket_us]
        group = self._field(group_by, args) if group_by else sql.SQL("NULL")
        where = self._where(q, args)
        query = sql.SQL(
            "SELECT ({t} / %s) * %s AS b, {g} AS g, count(*) FROM {table}{w} GROUP BY 1, 2"
        ).format(t=self._time_us(), g=group, table=self.table, w=where)
        return [(int(b), g, int(n)) for b, g, n in self.conn.execute(query, args)]

    def top(self, q: LakeQuery, field: str, limit: int) -> list[dict[str, Any]]:
        """The commonest values of ``field``."""
        sql = self.sql
        args: list[Any] = []
        value = self._field(field, args)
        where = self._where(q, args)
        args.append(limit)
        query = sql.SQL(
            "SELECT {v} AS v, count(*) AS n FROM {table}{w} GROUP BY 1 ORDER BY n DESC, v LIMIT %s"
        ).format(v=value, table=self.table, w=where)
        return [{"value": v, "count": int(n)} for v, n in self.conn.execute(query, args)]

    def summary(
        self, q: LakeQuery, bucket_us: int, dimensions: list[Dimension], distinct: str | None,
        limit: int,
    ) -> Summary:  # fmt: skip
        """Counts per bucket, per value of each dimension and in all, in one scan."""
        sql = self.sql
        args: list[Any] = [bucket_us, bucket_us]
        parts = [sql.SQL("({} / %s) * %s AS b").format(self._time_us())]
        for i, dimension in enumerate(dimensions):
            value = self._field(dimension.field, args)
            value = self._host(value, args) if dimension.host else value
            parts.append(sql.SQL("{} AS {}").format(value, sql.Identifier(f"d{i}")))
        seen = self._field(distinct, args) if distinct else sql.SQL("CAST(NULL AS text)")
        parts.append(sql.SQL("{} AS v").format(seen))
        where = self._where(q, args)
        inner = sql.SQL("SELECT {} FROM {}{}").format(sql.SQL(", ").join(parts), self.table, where)
        args.append(limit)
        query = sql.SQL(grouping_sql("{inner}", len(dimensions), "%s")).format(inner=inner)
        return decode(self.conn.execute(query, args).fetchall(), len(dimensions))

    def cardinality(
        self, q: LakeQuery, fields: list[str], sample: int
    ) -> tuple[int, dict[str, int]]:
        """Rows and distinct values per field among ``sample`` rows of the selection (a
        big table is not scanned whole to fill a menu)."""
        sql = self.sql
        args: list[Any] = []
        values = [sql.SQL("{} AS {}").format(self._field(f, args), sql.Identifier(f"f{i}"))
                  for i, f in enumerate(fields)]  # fmt: skip
        where = self._where(q, args)
        args.append(sample)
        parts = [
            sql.SQL("count(DISTINCT {})").format(sql.Identifier(f"f{i}"))
            for i in range(len(fields))
        ]
        query = sql.SQL(
            "SELECT count(*), {parts} FROM (SELECT {values} FROM {table}{w} LIMIT %s) AS s"
        ).format(parts=sql.SQL(", ").join(parts), values=sql.SQL(", ").join(values),
                 table=self.table, w=where)  # fmt: skip
        row = self.conn.execute(query, args).fetchone()
        assert row is not None
        return int(row[0]), {f: int(n) for f, n in zip(fields, row[1:], strict=True)}

    def events(self, q: LakeQuery, limit: int, cursor: str | None) -> dict[str, Any]:
        """A page of rows, newest first, in the events API's shape."""
        sql = self.sql
        args: list[Any] = []
        time_us = self._time_us()
        keyset = None
        if cursor:
            keyset = sql.SQL("({t}, _event_id) < (%s, %s)").format(t=time_us)
        where = self._where(q, args, keyset)
        if cursor:
            args += list(_decode_cursor(cursor))
        # text[]: an untyped literal would pick jsonb - text, removing one key named "{…}"
        data = sql.SQL("jsonb_strip_nulls(to_jsonb(r) - CAST({drop} AS text[]))").format(
            drop=sql.Literal(list(SYSTEM))
        )
        if "_extra" in self.columns:
            data = sql.SQL("({}) || coalesce(r._extra, '{{}}'::jsonb)").format(data)
        args.append(limit + 1)
        query = sql.SQL(
            "SELECT _event_id, (extract(epoch FROM _received_at) * 1000000)::bigint, {t}, {d} "
            "FROM {table} AS r{w} ORDER BY 3 DESC, 1 DESC LIMIT %s"
        ).format(t=time_us, d=data, table=self.table, w=where)
        rows = self.conn.execute(query, args).fetchall()
        events = [
            {"id": r[0], "received_at": iso(int(r[1])), "time": iso(int(r[2])), "data": r[3]}
            for r in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(int(last[2]), last[0])
        return {"events": events, "next_cursor": next_cursor}

    def arrivals(self, since_us: int, until_us: int, bucket_us: int = 60_000_000) -> list[int]:
        """Rows received per bucket (a minute unless told) in ``[since, until)``."""
        first = since_us // bucket_us * bucket_us
        counts = [0] * max(0, -(-(until_us - first) // bucket_us))
        query = self.sql.SQL(
            "SELECT ((extract(epoch FROM _received_at) * 1000000)::bigint - %s) / %s, count(*) "
            "FROM {} WHERE _received_at >= %s AND _received_at < %s GROUP BY 1"
        ).format(self.table)
        start = datetime.fromtimestamp(since_us / 1e6, tz=UTC)
        end = datetime.fromtimestamp(until_us / 1e6, tz=UTC)
        for slot, n in self.conn.execute(query, [first, bucket_us, start, end]):
            if 0 <= int(slot) < len(counts):
                counts[int(slot)] = int(n)
        return counts

    def size_bytes(self) -> int:
        """The table's size on disk, indexes and TOAST included."""
        row = self.conn.execute(
            "SELECT pg_total_relation_size(to_regclass(%s))", (self.regclass,)
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def estimated_rows(self) -> int:
        """The planner's row estimate for a big table (no scan), an exact count for a small one."""
        row = self.conn.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            (self.regclass,),
        ).fetchone()
        if row is not None and row[0] is not None and int(row[0]) >= 100_000:
            return int(row[0])
        counted = self.conn.execute(
            self.sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) AS s").format(
                self.table
            ),
            (1_000_000,),
        ).fetchone()
        return int(counted[0]) if counted else 0


def query_table_events(
    sink_id: str, sink: PostgresConfig, stream: str, params: list[tuple[str, str]]
) -> dict[str, Any]:
    """The ``GET /v1/streams/{stream}/events`` answer from a PostgreSQL sink's table (the
    events it receives): newest first by its ``export.time_column``, with a cursor, the same
    parameters and refusals as the lake's (``query.lake.query_events``)."""
    from headrace.query.lake import events_query

    q, limit = events_query(sink_id, stream, params)  # a bad cursor is a 400 before connecting
    cursor = dict(params).get("cursor") or None
    table = PgTable(sink)
    try:
        if not table.exists:
            return {"stream": stream, "events": [], "next_cursor": None}
        return {"stream": stream, **table.events(q, limit, cursor)}
    finally:
        table.close()
