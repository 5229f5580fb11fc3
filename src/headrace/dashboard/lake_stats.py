"""Aggregations over the lake for the dashboard, with DuckDB: counts over time (optionally
grouped by a field), top values of a field, and arrivals per minute.

They reuse the events API's query plan (``query.lake``), so a dashboard number and a ``GET``
with the same filters read the same files with the same conditions. A grouping field becomes SQL
only as a quoted column the catalog knows; otherwise it is looked up in ``_extra`` with a bound
JSON Pointer, never spliced into the text.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.query.lake import LakeQuery, _plan, _state, host_sql, text_expr
from headrace.query.summary import Dimension, Summary, decode, grouping_sql
from headrace.sinks.lake.config import LakeConfig

BUCKETS_US = [
    60_000_000,
    300_000_000,
    900_000_000,
    3_600_000_000,
    6 * 3_600_000_000,
    24 * 3_600_000_000,
    7 * 24 * 3_600_000_000,
    30 * 24 * 3_600_000_000,
    365 * 24 * 3_600_000_000,
]
OTHER = "(other)"
MISSING = "(none)"


def pick_bucket(since_us: int, until_us: int, target: int = 120) -> int:
    """The smallest standard bucket that cuts the range into at most ``target`` pieces; for a
    range of centuries, whole years enough to keep to ``target`` (a chart is never huge)."""
    span = max(until_us - since_us, 1)
    for bucket in BUCKETS_US:
        if span / bucket <= target:
            return bucket
    year = BUCKETS_US[-1]
    return year * -(-span // (year * target))


@dataclass
class _Lake:
    """A DuckDB connection and the catalog, for a few queries over one sink."""

    db: Any
    catalog: sqlite3.Connection
    root: Path
    sink_id: str

    def close(self) -> None:
        self.catalog.close()
        self.db.close()


def open_lake(data_dir: Path, sink_id: str, sink: LakeConfig) -> _Lake | None:
    """A connection to the sink's lake, or ``None`` when nothing was ever delivered."""
    import duckdb

    catalog = _state(data_dir)
    if catalog is None:
        return None
    root = Path(sink.path) if sink.path else data_dir / "lake"
    return _Lake(duckdb.connect(), catalog, root, sink_id)


def _inner(lake: _Lake, q: LakeQuery, fields: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The filtered selection as a subquery with ``t`` (event time µs) and ``f0``.. ``fN``."""
    exprs: list[str] = []
    params_holder: dict[str, Any] = {}

    def select(columns: dict[str, str]) -> str:
        exprs.clear()
        for index, name in enumerate(fields):
            exprs.append(text_expr(name, columns, f"g{index}", params_holder) + f" AS f{index}")
        return ", ".join(["epoch_us(_time) AS t", "epoch_us(_received_at) AS r", *exprs])

    q.limit = None
    plan = _plan(lake.db, lake.catalog, lake.root, q, select)
    if plan is None:
        return None
    plan.params.update(params_holder)
    plan.params.pop("limit", None)
    return plan.unordered, plan.params


def assemble_series(
    rows: list[tuple[int, Any, int]],
    since_us: int,
    until_us: int,
    bucket_us: int,
    grouped: bool,
    top: int = 8,
) -> dict[str, Any]:
    """Chart data from (bucket start µs, group value, count) rows: one series, or one per group
    (the ``top`` commonest; the rest summed as ``(other)``), zeros where nothing happened."""
    first = (since_us // bucket_us) * bucket_us
    buckets = list(range(first, until_us, bucket_us))
    index = {b: i for i, b in enumerate(buckets)}

    def name_of(value: Any) -> str:
        if not grouped:
            return "events"
        return MISSING if value is None else str(value)

    per_group: dict[str, int] = {}
    for _, value, count in rows:
        per_group[name_of(value)] = per_group.get(name_of(value), 0) + count
    kept = set(sorted(per_group, key=lambda g: (-per_group[g], g))[:top])
    series: dict[str, list[int]] = {}
    total = 0
    for bucket, value, count in rows:
        slot = index.get(bucket)
        if slot is None:
            continue
        name = name_of(value)
        counts = series.setdefault(name if name in kept else OTHER, [0] * len(buckets))
        counts[slot] += count
        total += count
    return {
        "bucket_seconds": bucket_us // 1_000_000,
        "times": [b // 1_000_000 for b in buckets],
        "series": series,
        "groups": ordered_groups(series),
        "total": total,
    }


def ordered_groups(series: dict[str, list[int]]) -> list[dict[str, Any]]:
    """The series' names with their totals, biggest first (ties by name), ``(other)`` last: the
    order (and so the colours) a chart and its legend keep. JSON objects cannot carry it: a
    browser lists keys like "2" before all others."""
    totals = {name: sum(counts) for name, counts in series.items()}
    ranked = sorted(totals, key=lambda g: (g == OTHER, -totals[g], g))
    return [{"name": name, "total": totals[name]} for name in ranked]


def count_over_time(
    lake: _Lake, q: LakeQuery, bucket_us: int, group_by: str | None = None, top: int = 8
) -> dict[str, Any]:
    """Counts per time bucket, as one series or one per value of ``group_by``."""
    assert q.since_us is not None and q.until_us is not None
    inner = _inner(lake, q, [group_by] if group_by else [])
    rows: list[tuple[int, Any, int]] = []
    if inner is not None:
        sql, params = inner
        params["bucket"] = bucket_us
        group = "f0" if group_by else "NULL"
        found = lake.db.execute(
            f"SELECT (t // $bucket) * $bucket AS b, {group} AS g, count(*) FROM ({sql}) "
            "GROUP BY ALL",
            params,
        ).fetchall()
        rows = [(int(b), g, int(n)) for b, g, n in found]
    return assemble_series(rows, q.since_us, q.until_us, bucket_us, group_by is not None, top)


def top_values(lake: _Lake, q: LakeQuery, field: str, limit: int = 10) -> list[dict[str, Any]]:
    """The commonest values of ``field`` in the selection, with their counts."""
    inner = _inner(lake, q, [field])
    if inner is None:
        return []
    sql, params = inner
    params["top"] = limit
    rows = lake.db.execute(
        f"SELECT f0, count(*) AS n FROM ({sql}) GROUP BY f0 ORDER BY n DESC, f0 LIMIT $top",
        params,
    ).fetchall()
    return [{"value": MISSING if v is None else v, "count": int(n)} for v, n in rows]


def summary(
    lake: _Lake, q: LakeQuery, bucket_us: int, dimensions: list[Dimension],
    distinct: str | None, limit: int,
) -> Summary:  # fmt: skip
    """Counts per bucket, per value of each dimension and in all, in one scan (``summary``)."""
    fields = [d.field for d in dimensions] + ([distinct] if distinct else [])
    inner = _inner(lake, q, fields)
    if inner is None:
        return Summary(groups=[[] for _ in dimensions])
    sql, params = inner
    parts = ["(t // $bucket) * $bucket AS b"]
    parts += [
        f"{host_sql(f'f{i}') if d.host else f'f{i}'} AS d{i}" for i, d in enumerate(dimensions)
    ]
    parts.append(f"f{len(dimensions)} AS v" if distinct else "CAST(NULL AS VARCHAR) AS v")
    params["bucket"], params["top"] = bucket_us, limit
    query = grouping_sql(f"SELECT {', '.join(parts)} FROM ({sql})", len(dimensions), "$top")
    return decode(lake.db.execute(query, params).fetchall(), len(dimensions))


def cardinality(lake: _Lake, q: LakeQuery, fields: list[str]) -> tuple[int, dict[str, int]]:
    """The selection's event count and, per field, about how many distinct values it takes
    (HyperLogLog: cheap over millions of events, exact enough to tell 5 from 5,000)."""
    inner = _inner(lake, q, fields)
    if inner is None or not fields:
        return 0, dict.fromkeys(fields, 0)
    sql, params = inner
    parts = ", ".join(f"approx_count_distinct(f{i})" for i in range(len(fields)))
    row = lake.db.execute(f"SELECT count(*), {parts} FROM ({sql})", params).fetchone()
    assert row is not None
    return int(row[0]), {name: int(n) for name, n in zip(fields, row[1:], strict=True)}


def arrivals(
    lake: _Lake, stream: str, since_us: int, until_us: int, bucket_us: int = 60_000_000
) -> list[int]:
    """Events received per bucket (a minute unless told) in ``[since, until)``, by receive time.

    Only files created since ``since`` can hold events received since then (a file is written
    after its events arrive), so the catalog prunes by creation time rather than event time."""
    first = (since_us // bucket_us) * bucket_us
    counts = [0] * max(0, -(-(until_us - first) // bucket_us))
    paths = [
        str(lake.root / row[0])
        for row in lake.catalog.execute(
            "SELECT path FROM lake_files WHERE sink = ? AND stream = ? AND created_us >= ?",
            (lake.sink_id, stream, since_us),
        )
    ]
    if not paths:
        return counts
    rows = lake.db.execute(
        "SELECT (epoch_us(_received_at) - $first) // $bucket AS m, count(*) "
        "FROM read_parquet($files, union_by_name = true, hive_partitioning = false) "
        "WHERE epoch_us(_received_at) >= $since AND epoch_us(_received_at) < $until GROUP BY m",
        {"files": paths, "first": first, "bucket": bucket_us, "since": since_us,
         "until": until_us},
    ).fetchall()  # fmt: skip
    for slot, count in rows:
        if 0 <= int(slot) < len(counts):
            counts[int(slot)] = int(count)
    return counts


def arrivals_per_minute(lake: _Lake, stream: str, since_us: int, until_us: int) -> list[int]:
    """Events received per minute in ``[since, until)`` (see ``arrivals``)."""
    return arrivals(lake, stream, since_us, until_us)


def stream_summaries(lake: _Lake) -> list[dict[str, Any]]:
    """Every stream of the sink with its stored events, files, bytes and time span (catalog only)."""
    rows = lake.catalog.execute(
        "SELECT stream, sum(rows), count(*), sum(bytes), min(min_time_us), max(max_time_us) "
        "FROM lake_files WHERE sink = ? GROUP BY stream ORDER BY stream",
        (lake.sink_id,),
    ).fetchall()
    return [
        {
            "stream": stream,
            "events": int(events),
            "files": int(files),
            "bytes": int(size),
            "first_us": int(first),
            "last_us": int(last),
        }
        for stream, events, files, size, first, last in rows
    ]


def stream_columns(lake: _Lake, stream: str) -> dict[str, str]:
    """The stream's user columns and their types."""
    from headrace.storage.lake_catalog import columns_of

    return columns_of(lake.catalog, lake.sink_id, stream)
