"""The one Parquet writer of headrace: column types, value checks, Arrow tables and files.

Used by the local lake (row by row, with inferred columns) and the S3 sink (column by column,
with a declared schema). Column types are ``string``, ``int64``, ``float64``, ``bool``,
``timestamp`` (µs, UTC) and ``json`` (the value's JSON text). A value that does not fit its
column is never stored as null or truncated: the caller learns which records failed and why.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import msgspec

from headrace.storage.files import fsync_path
from headrace.storage.lake_catalog import INT64_MAX, INT64_MIN, parse_time_us

_json = msgspec.json.Encoder()
UNSET: Any = object()
"""``coerce``'s answer for a value that does not fit."""


def infer_type(value: Any) -> str | None:
    """The column type a first-seen value gets (``None`` for null: decided later)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64" if INT64_MIN <= value <= INT64_MAX else "json"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if value is None:
        return None
    return "json"


def coerce(value: Any, column_type: str, time_format: str = "auto") -> Any:
    """``value`` as stored in a column of ``column_type``, or ``UNSET`` if it does not fit."""
    if value is None:
        return None
    if column_type == "string":
        return value if isinstance(value, str) else UNSET
    if column_type == "int64":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return int(value) if ok and INT64_MIN <= value <= INT64_MAX else UNSET
    if column_type == "float64":
        if isinstance(value, float):
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            return UNSET
        try:
            stored = float(value)
        except OverflowError:  # past 1.8e308
            return UNSET
        return stored if stored == value else UNSET  # an int a double cannot hold exactly
    if column_type == "bool":
        return value if isinstance(value, bool) else UNSET
    if column_type == "timestamp":
        parsed = parse_time_us(value, time_format)
        return UNSET if parsed is None or not INT64_MIN <= parsed <= INT64_MAX else parsed
    return _json.encode(value).decode()  # json


def arrow_type(column_type: str) -> Any:
    """The Arrow type of a column type."""
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "json": pa.string(),
    }[column_type]


def table_from_rows(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> Any:
    """An Arrow table of already-checked rows (``columns``: name, column type; timestamps in µs)."""
    import pyarrow as pa

    return pa.table(
        {
            name: pa.array(list(map(dict.get, rows, repeat(name))), arrow_type(kind))
            for name, kind in columns
        }
    )


@dataclass
class ColumnBuild:
    """An Arrow table built column by column, and the rows that could not be stored."""

    table: Any
    failed: dict[int, str] = field(default_factory=dict)
    """Row index: why it does not fit."""


def table_from_records(
    records: Sequence[dict[str, Any]],
    fields: dict[str, str],
    *,
    required: Sequence[str] = (),
    unknown: str = "drop",
    time_format: str = "auto",
) -> ColumnBuild:
    """Records (event data) as a table of the declared ``fields``; rows with a value that does not
    fit its type, a missing ``required`` field, or (``unknown="error"``) an undeclared field are
    left out and reported. ``unknown="keep_json"`` adds an ``_extra`` JSON column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    failed: dict[int, str] = {}
    columns: dict[str, Any] = {}
    for name, kind in fields.items():
        values = list(map(dict.get, records, repeat(name)))  # gathered in C, not row by row
        array = exact_column(values, kind, time_format)
        if array is None:  # a column with misfits (or values to convert): checked one by one
            for index, value in enumerate(values):
                stored = coerce(value, kind, time_format)
                if stored is UNSET:
                    failed.setdefault(index, _misfit(name, kind, value))
                    stored = None
                values[index] = stored
            array = pa.array(values, arrow_type(kind))
        columns[name] = array
    for name in required:
        if columns[name].null_count:
            for index in pc.indices_nonzero(pc.is_null(columns[name])).to_pylist():
                failed.setdefault(index, f'required field "{name}" is missing or null')
    if unknown != "drop":
        extras = _extras(records, fields.keys(), columns.values())
        if unknown == "error":
            for index, extra in extras.items():
                failed.setdefault(index, f"undeclared field(s): {', '.join(sorted(extra))}")
        else:
            texts: list[str | None] = [None] * len(records)
            for index, extra in extras.items():
                texts[index] = _json.encode(extra).decode()
            columns["_extra"] = pa.array(texts, pa.string())
    table = pa.table(columns)
    if failed:
        keep = pa.array([i not in failed for i in range(len(records))], pa.bool_())
        table = table.filter(keep)
    return ColumnBuild(table, failed)


def exact_column(values: list[Any], kind: str, time_format: str = "auto") -> Any | None:
    """``values`` as an Arrow array of ``kind`` if every one of them is stored as it is (or, for
    whole epoch times, converted by Arrow); ``None`` if any needs a look of its own.

    Arrow infers a single type for the whole list in C, and that type says which Python types
    the list holds: ``string`` only str, ``int64`` only ints (a bool among them is refused),
    ``bool`` only bools, ``null`` nothing at all. The one blur is ``double``, which takes a bool
    after a float, so a float64 column is also asked for its set of types. (Handed the declared
    type instead, pyarrow would store 1.5 in an int64 column as 1 and True in a float64 as 1.0.)
    """
    import pyarrow as pa

    if kind == "json" or (kind == "timestamp" and time_format == "iso8601"):
        return None
    try:
        array = pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):  # mixed, or past 64 bits
        return None
    found = array.type
    try:
        if found == pa.null():
            return array.cast(arrow_type(kind))
        if kind in ("string", "int64", "bool"):
            return array if found == arrow_type(kind) else None
        if kind == "float64":
            if found == pa.int64():
                # refuses ints past 2**53, even those a double holds exactly (2**60): coerce
                # decides those one by one
                return array.cast(pa.float64())
            if found == pa.float64() and bool not in set(map(type, values)):
                return array
            return None
        if kind == "timestamp" and time_format != "iso8601" and found == pa.int64():
            return epoch_micros(array, time_format).cast(arrow_type("timestamp"))
    except pa.ArrowInvalid:  # out of range: the value-by-value rules decide
        return None
    return None


def _extras(
    records: Sequence[dict[str, Any]], declared: Any, columns: Any
) -> dict[int, dict[str, Any]]:
    """Row index: its undeclared fields, for the rows that have any (``columns``: the declared
    fields' arrays, where a missing key is a null)."""
    if not any(c.null_count for c in columns) and set(map(len, records)) <= {len(declared)}:
        return {}  # every record holds every declared key, and no other
    undeclared = set().union(*records) - declared  # one pass over the keys, in C
    if not undeclared:
        return {}
    rows: set[int] = set()
    for name in undeclared:
        rows.update(i for i, has in enumerate(map(dict.__contains__, records, repeat(name))) if has)
    return {
        index: {k: v for k, v in records[index].items() if k not in declared}
        for index in sorted(rows)
    }


_EPOCH_FACTORS = {"epoch_s": 1_000_000, "epoch_ms": 1000, "epoch_us": 1}


def epoch_micros(column: Any, time_format: str) -> Any:
    """Whole epoch numbers (an Arrow int64 array) as µs; ``auto`` goes by magnitude, as
    ``parse_time_us`` does (1e14 and above: µs; 1e11 and above: ms; else s). Raises
    ``ArrowInvalid`` rather than wrap past 64 bits."""
    import pyarrow.compute as pc

    if time_format != "auto":
        return pc.multiply_checked(column, _EPOCH_FACTORS[time_format])
    size = pc.abs_checked(column)
    # the branch a value takes cannot overflow (below 1e14 times 1000, below 1e11 times 1e6); the
    # discarded ones may wrap, which is why these multiplications are unchecked
    return pc.if_else(
        pc.greater_equal(size, 10**14),
        column,
        pc.if_else(pc.greater_equal(size, 10**11), pc.multiply(column, 1000),
                   pc.multiply(column, 1_000_000)),
    )  # fmt: skip


def _misfit(name: str, kind: str, value: Any) -> str:
    why = f'field "{name}" is declared {kind}; got {_describe(value)}'
    if kind == "float64" and isinstance(value, int) and not isinstance(value, bool):
        why += " (not exactly a float64: declare it int64 or json)"
    return why


def _describe(value: Any) -> str:
    text = _json.encode(value).decode()
    return f"{type(value).__name__} {text[:60]}"


def parquet_bytes(table: Any, compression: str) -> bytes:
    """``table`` as the bytes of a Parquet file."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


def write_parquet_file(table: Any, path: Path, compression: str = "zstd") -> int:
    """Write ``table`` to ``path`` so that it appears whole or not at all (a hidden temporary
    file, fsync'd and renamed, then the directory fsync'd); returns its size."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression=compression)
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)
    return path.stat().st_size


__all__ = [
    "UNSET",
    "ColumnBuild",
    "arrow_type",
    "coerce",
    "epoch_micros",
    "exact_column",
    "fsync_path",
    "infer_type",
    "parquet_bytes",
    "table_from_records",
    "table_from_rows",
    "write_parquet_file",
]
