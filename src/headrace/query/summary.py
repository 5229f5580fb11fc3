"""Many counts of one selection in one scan: per time bucket, per value of a few fields, and in
all, each with the count of distinct values of another field (visitors), for the page-hits
view. The lake and PostgreSQL build the inner selection (columns ``b``, ``d0``..``dN``, ``v``)
in their own SQL; the GROUPING SETS around it are the same text for both.

One scan instead of one query per number: over a few hundred Parquet files the cost of a query
is mostly opening them: nine queries took about three times as long as these two scans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Dimension:
    """A field to count by; ``host``: by the host of the URL it holds (``None`` if it holds
    none)."""

    field: str
    host: bool = False


@dataclass
class Summary:
    """The counts of a selection (distinct counts are 0 when no distinct field was asked)."""

    total: int = 0
    distinct: int = 0
    buckets: dict[int, tuple[int, int]] = field(default_factory=dict)  # start µs: (n, distinct)
    groups: list[list[dict[str, Any]]] = field(
        default_factory=list
    )  # per dimension, commonest first


def _masks(dimensions: int) -> tuple[int, list[int], int]:
    """GROUPING(b, d0, .., dN) of the sets (b), (d0) .. (dN) and (): a bit per argument, the last
    argument the lowest bit, set where the argument is not grouped (SQL's rule, DuckDB's too)."""
    every = (1 << (dimensions + 1)) - 1
    by_bucket = every ^ (1 << dimensions)
    by_dimension = [every ^ (1 << (dimensions - 1 - i)) for i in range(dimensions)]
    return by_bucket, by_dimension, every


def grouping_sql(inner: str, dimensions: int, limit_placeholder: str) -> str:
    """The query over ``inner`` (columns b, d0..dN, v): counts per set, at most ``limit`` rows
    per dimension (the commonest; ties by value), every bucket, and the total."""
    names = ["b", *(f"d{i}" for i in range(dimensions))]
    by_bucket, _, every = _masks(dimensions)
    sets = ", ".join(f"({name})" for name in names) + ", ()"
    tie = f"coalesce({', '.join(names[1:])})" if dimensions else "b"
    return (
        f"SELECT g, {', '.join(names)}, n, nd FROM ("
        f"SELECT g, {', '.join(names)}, n, nd, "
        f"row_number() OVER (PARTITION BY g ORDER BY n DESC, {tie} NULLS LAST) AS r FROM ("
        f"SELECT GROUPING({', '.join(names)}) AS g, {', '.join(names)}, count(*) AS n, "
        f"count(DISTINCT v) AS nd FROM ({inner}) AS s GROUP BY GROUPING SETS ({sets})"
        f") AS c) AS ranked WHERE r <= {limit_placeholder} OR g IN ({by_bucket}, {every})"
    )


def decode(rows: list[tuple[Any, ...]], dimensions: int) -> Summary:
    """The rows of ``grouping_sql`` as a ``Summary``."""
    by_bucket, by_dimension, every = _masks(dimensions)
    found = Summary(groups=[[] for _ in range(dimensions)])
    for row in rows:
        mask, bucket, values, n, nd = int(row[0]), row[1], row[2:-2], int(row[-2]), int(row[-1])
        if mask == every:
            found.total, found.distinct = n, nd
        elif mask == by_bucket:
            found.buckets[int(bucket)] = (n, nd)
        else:
            index = by_dimension.index(mask)
            found.groups[index].append({"value": values[index], "count": n, "distinct": nd})
    for group in found.groups:
        group.sort(key=lambda g: (-g["count"], g["value"] is None, str(g["value"])))
    return found
