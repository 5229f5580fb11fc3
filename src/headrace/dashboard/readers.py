"""One face for the dashboard's reads of a stream, whichever sink stores it: the lake (DuckDB
over its catalogued files) or a PostgreSQL table (SQL). Each reader answers the stream views
(columns, counts over time, top values, a page of events, CSV export) and the page-hits view.
"""

from __future__ import annotations

import io
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from headrace.dashboard import lake_stats as ls
from headrace.query.lake import LakeQuery, export_csv, parse_limit, query_events
from headrace.query.summary import Dimension, Summary
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.postgres.config import PostgresConfig


class StreamReader(Protocol):
    """The dashboard's reads of one stream in one sink."""

    def columns(self) -> dict[str, str]: ...

    def counts(self, q: LakeQuery, group_by: str | None, top: int = 8) -> dict[str, Any]: ...

    def top(self, q: LakeQuery, field: str, limit: int) -> list[dict[str, Any]]: ...

    def summary(
        self, q: LakeQuery, dimensions: list[Dimension], distinct: str | None, limit: int
    ) -> Summary: ...

    def cardinality(self, q: LakeQuery, fields: list[str]) -> tuple[int, dict[str, int]]: ...

    def events(self, q: LakeQuery, params: list[tuple[str, str]]) -> dict[str, Any]: ...

    def export(self, q: LakeQuery, out: BinaryIO) -> int: ...

    def close(self) -> None: ...


CARDINALITY_SAMPLE = 100_000  # rows of a PostgreSQL table read to tell how varied a field is


def _bucket(q: LakeQuery) -> int:
    assert q.since_us is not None and q.until_us is not None
    return ls.pick_bucket(q.since_us, q.until_us)


class LakeReader:
    """A stream in the lake."""

    def __init__(self, data_dir: Path, sink_id: str, sink: LakeConfig, stream: str) -> None:
        self.data_dir, self.sink_id, self.sink, self.stream = data_dir, sink_id, sink, stream

    @cached_property
    def lake(self) -> ls._Lake | None:
        """The lake's DuckDB and catalog connections, opened on first use: the events page and
        the CSV export open their own."""
        return ls.open_lake(self.data_dir, self.sink_id, self.sink)

    def columns(self) -> dict[str, str]:
        return ls.stream_columns(self.lake, self.stream) if self.lake else {}

    def counts(self, q: LakeQuery, group_by: str | None, top: int = 8) -> dict[str, Any]:
        assert q.since_us is not None and q.until_us is not None
        if self.lake is None:
            return ls.assemble_series([], q.since_us, q.until_us, _bucket(q), False)
        return ls.count_over_time(self.lake, q, _bucket(q), group_by, top)

    def top(self, q: LakeQuery, field: str, limit: int) -> list[dict[str, Any]]:
        return ls.top_values(self.lake, q, field, limit) if self.lake else []

    def summary(
        self, q: LakeQuery, dimensions: list[Dimension], distinct: str | None, limit: int
    ) -> Summary:
        if self.lake is None:
            return Summary(groups=[[] for _ in dimensions])
        return ls.summary(self.lake, q, _bucket(q), dimensions, distinct, limit)

    def cardinality(self, q: LakeQuery, fields: list[str]) -> tuple[int, dict[str, int]]:
        return ls.cardinality(self.lake, q, fields) if self.lake else (0, dict.fromkeys(fields, 0))

    def events(self, q: LakeQuery, params: list[tuple[str, str]]) -> dict[str, Any]:
        return query_events(self.data_dir, self.sink_id, self.sink, self.stream, params)

    def export(self, q: LakeQuery, out: BinaryIO) -> int:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        try:
            return export_csv(self.data_dir, self.sink_id, self.sink, q, text, safe=True)
        finally:
            text.flush()
            text.detach()

    def close(self) -> None:
        lake = self.__dict__.get("lake")  # only if it was opened
        if lake is not None:
            lake.close()


class PostgresReader:
    """The rows of a PostgreSQL sink's table (the stream is the events it receives)."""

    def __init__(self, sink: PostgresConfig) -> None:
        from headrace.query.pg_table import PgTable

        self.sink = sink
        self.table = PgTable(sink)

    def columns(self) -> dict[str, str]:
        return self.table.user_columns()

    def counts(self, q: LakeQuery, group_by: str | None, top: int = 8) -> dict[str, Any]:
        assert q.since_us is not None and q.until_us is not None
        bucket = _bucket(q)
        rows = self.table.counts(q, bucket, group_by) if self.table.exists else []
        return ls.assemble_series(rows, q.since_us, q.until_us, bucket, group_by is not None, top)

    def top(self, q: LakeQuery, field: str, limit: int) -> list[dict[str, Any]]:
        if not self.table.exists:
            return []
        return [
            {"value": ls.MISSING if v["value"] is None else v["value"], "count": v["count"]}
            for v in self.table.top(q, field, limit)
        ]

    def summary(
        self, q: LakeQuery, dimensions: list[Dimension], distinct: str | None, limit: int
    ) -> Summary:
        if not self.table.exists:
            return Summary(groups=[[] for _ in dimensions])
        return self.table.summary(q, _bucket(q), dimensions, distinct, limit)

    def cardinality(self, q: LakeQuery, fields: list[str]) -> tuple[int, dict[str, int]]:
        if not self.table.exists or not fields:
            return 0, dict.fromkeys(fields, 0)
        return self.table.cardinality(q, fields, CARDINALITY_SAMPLE)

    def events(self, q: LakeQuery, params: list[tuple[str, str]]) -> dict[str, Any]:
        values = dict(params)
        limit = parse_limit(values)
        if not self.table.exists:
            return {"stream": q.stream, "events": [], "next_cursor": None}
        page = self.table.events(q, limit, values.get("cursor") or None)
        return {"stream": q.stream, **page}

    def export(self, q: LakeQuery, out: BinaryIO) -> int:
        from headrace.query.postgres import PostgresExport

        selection = PostgresExport(
            self.sink, since_us=q.since_us, until_us=q.until_us, where=q.where, safe=True
        )
        with selection as export:
            return export.write_csv(out)

    def close(self) -> None:
        self.table.close()


def open_reader(
    data_dir: Path, sink_id: str, sink: LakeConfig | PostgresConfig, stream: str
) -> StreamReader:
    """The reader of ``stream`` in ``sink``."""
    if isinstance(sink, PostgresConfig):
        return PostgresReader(sink)
    return LakeReader(data_dir, sink_id, sink, stream)
