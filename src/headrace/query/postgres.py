"""CSV export from a PostgreSQL sink, streamed with ``COPY (SELECT …) TO STDOUT`` (records end
in LF, as PostgreSQL writes them).

Filters name columns that exist in the table (checked first), identifiers go through
``psycopg.sql.Identifier`` and values through ``psycopg.sql.Literal`` (COPY takes no server-side
parameters, so psycopg quotes them itself). The header row uses the configured names.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import Any, TextIO

from headrace.config.models import PostgresSink
from headrace.query.lake import QueryError


def _time_value(us: int, unit: str) -> Any:
    from datetime import UTC, datetime

    if unit == "epoch_ms":
        return us // 1000
    if unit == "epoch_s":
        return us // 1_000_000
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def export_postgres(
    config: PostgresSink,
    *,
    since_us: int | None,
    until_us: int | None,
    where: list[tuple[str, str]],
    out: TextIO,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the selected rows as CSV (header row first); returns the rows written."""
    import psycopg
    from psycopg import sql

    dsn = config.dsn.get_secret_value() if config.dsn else ""
    table = sql.Identifier(config.schema_name, config.table)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        present = {
            row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (config.schema_name, config.table),
            )
        }  # fmt: skip
        if not present:
            raise QueryError("no_table", f"{config.schema_name}.{config.table} does not exist yet")
        headers = config.export.columns or {name: name for name in config.columns}
        for name in [*headers, *(n for n, _ in where), config.export.time_column]:
            if name not in present:
                raise QueryError("unknown_column", f'the table has no column "{name}"')
        conditions = [
            sql.SQL("CAST({} AS text) = {}").format(sql.Identifier(n), sql.Literal(v))
            for n, v in where
        ]
        time_column = sql.Identifier(config.export.time_column)
        if since_us is not None:
            conditions.append(
                sql.SQL("{} >= {}").format(
                    time_column, sql.Literal(_time_value(since_us, config.export.time_unit))
                )
            )
        if until_us is not None:
            conditions.append(
                sql.SQL("{} < {}").format(
                    time_column, sql.Literal(_time_value(until_us, config.export.time_unit))
                )
            )
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, headers)), table
        )
        if conditions:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
        counted = conn.execute(
            sql.SQL("SELECT count(*) FROM ({}) AS selection").format(query)
        ).fetchone()
        total = int(counted[0]) if counted else 0
        query += sql.SQL(" ORDER BY {}").format(time_column)
        # PostgreSQL ends CSV records with LF; the header matches, and the data passes untouched
        # (a newline inside a quoted field is data).
        csv.writer(out, lineterminator="\n").writerow(list(headers.values()))
        with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)) as copy:
            for chunk in copy:
                text = bytes(chunk).decode("utf-8")
                out.write(text)
                if progress is not None:
                    progress(text.count("\n"))  # about one line a row: good enough for a bar
    return total
