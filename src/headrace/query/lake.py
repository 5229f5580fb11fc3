"""Reading the lake with DuckDB: the ``GET`` events API and CSV export share one query builder.

Only files listed in the catalog are read (never a glob), so readers see whole batches only.
Field names become SQL only after they are matched against the stream's known columns and quoted;
values are always bound parameters.
"""

from __future__ import annotations

import base64
import binascii
import csv
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec

from headrace.sinks.lake.config import LakeConfig
from headrace.storage.lake_catalog import columns_of, files_for, parse_time_us
from headrace.storage.state import connect

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
RESERVED_PARAMS = {"since", "until", "limit", "cursor"}
_json_decoder = msgspec.json.Decoder()


class QueryError(Exception):
    """A query that cannot run as asked; ``reason`` is machine-readable, ``status`` the HTTP
    status to answer (400 unless the thing asked for does not exist)."""

    def __init__(self, reason: str, message: str, *, status: int = 400) -> None:
        self.reason = reason
        self.status = status
        super().__init__(message)


def quote_identifier(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


# The times a date can show (years 1 to 9999): beyond them an epoch number overflows SQLite's
# integers and datetime, which turned odd query strings into 500s.
MIN_TIME_US = int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
MAX_TIME_US = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1_000_000)


def parse_time_param(name: str, value: str) -> int:
    """A ``since``/``until`` value (ISO 8601 or epoch s/ms/µs) in µs, years 1 to 9999."""
    parsed = parse_time_us(value)
    if parsed is not None and not MIN_TIME_US <= parsed <= MAX_TIME_US:
        raise QueryError("invalid_time", f'{name}="{value}" is outside the years 1 to 9999')
    if parsed is None:
        raise QueryError(
            "invalid_time", f'{name}="{value}" is not an ISO 8601 time or epoch number'
        )
    return parsed


def parse_limit(values: dict[str, str]) -> int:
    """The ``limit`` parameter: a whole number from 1 to ``MAX_LIMIT`` (``DEFAULT_LIMIT`` if
    absent)."""
    text = values.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
        raise QueryError("invalid_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def iso(us: int | None) -> str | None:
    """µs since the epoch as ISO 8601 UTC."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass
class LakeQuery:
    """A selection of one stream's events."""

    sink_id: str
    stream: str
    since_us: int | None = None
    until_us: int | None = None
    where: list[tuple[str, str]] = field(default_factory=list)
    newest_first: bool = True
    after: tuple[int, str] | None = None  # cursor: (time µs, id) of the last row already seen
    limit: int | None = None
    # (field, host): only events whose field is a URL on that host (``None``: no URL at all)
    hosts: list[tuple[str, str | None]] = field(default_factory=list)
    # (field, value): only events whose field is missing (or null) or equals the value
    missing_or: list[tuple[str, str]] = field(default_factory=list)


# The host of a URL held in a text field, lower case, without "www."; NULL when the text is no
# absolute URL (empty, missing, "android-app:..."-like without "//"). DuckDB and PostgreSQL read
# this pattern alike; it is a constant, never anything a user sent.
URL_HOST_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^:/?#]+)"


def host_sql(text_expr: str) -> str:
    """DuckDB SQL for the host of the URL in ``text_expr`` (see ``URL_HOST_PATTERN``)."""
    found = f"lower(regexp_extract({text_expr}, '{URL_HOST_PATTERN}', 1))"
    return f"nullif(regexp_replace({found}, '^www[.]', ''), '')"


def pointer(name: str) -> str:
    """``name`` as a JSON Pointer (RFC 6901) to a top-level key: "~" and "/" escaped."""
    return "/" + name.replace("~", "~0").replace("/", "~1")


def text_expr(name: str, columns: dict[str, str], bind: str, params: dict[str, Any]) -> str:
    """SQL for a field's value as text: its column, else its entry in ``_extra`` (by a bound
    JSON Pointer, so no name is ever part of the SQL but as a quoted known column)."""
    params[bind] = pointer(name)
    extra = f"json_extract_string(_extra, ${bind})"
    if name in columns:
        return f"coalesce(CAST({quote_identifier(name)} AS VARCHAR), {extra})"
    return extra


@dataclass
class _Plan:
    sql: str
    params: dict[str, Any]
    columns: dict[str, str]  # user columns present in the files, and their types
    # the same selection without ORDER BY and LIMIT, for aggregates over it (kept apart, not
    # cut from ``sql``: a quoted field name may itself contain " ORDER BY ")
    unordered: str


def _state(data_dir: Path) -> sqlite3.Connection | None:
    path = data_dir / "state.db"
    if not path.exists():
        return None
    return connect(path, readonly=True)


def _plan(
    db: Any,
    catalog: sqlite3.Connection,
    lake_root: Path,
    q: LakeQuery,
    select: Callable[[dict[str, str]], str],
) -> _Plan | None:
    """The query over the stream's files; ``select`` builds the select list from the user
    columns present in them (so the files are listed and described once)."""
    files = files_for(catalog, q.sink_id, q.stream, q.since_us, q.until_us)
    if not files:
        return None
    paths = [str(lake_root / f.path) for f in files]
    params: dict[str, Any] = {"files": paths}
    # hive_partitioning off: the dt=/hour= directories must not shadow fields named dt or hour
    source = "read_parquet($files, union_by_name = true, hive_partitioning = false)"
    present = {row[0] for row in db.execute(f"DESCRIBE SELECT * FROM {source}", params).fetchall()}
    registered = columns_of(catalog, q.sink_id, q.stream)
    columns = {name: kind for name, kind in registered.items() if name in present}
    conditions = []
    if q.since_us is not None:
        conditions.append("epoch_us(_time) >= $since")
        params["since"] = q.since_us
    if q.until_us is not None:
        conditions.append("epoch_us(_time) < $until")
        params["until"] = q.until_us
    if q.after is not None:
        op = "<" if q.newest_first else ">"
        conditions.append(f"(epoch_us(_time), _id) {op} ($after_t, $after_id)")
        params["after_t"], params["after_id"] = q.after
    for index, (name, value) in enumerate(q.where):
        bind = f"w{index}"
        params[bind] = value
        # A field lives in its column, or in _extra where a value did not fit the column's type.
        matches = []
        if name in columns or name == "_id":
            matches.append(f"CAST({quote_identifier(name)} AS VARCHAR) = ${bind}")
        if "_extra" in present and name != "_id":
            # a JSON Pointer (RFC 6901) names any key safely: "~" and "/" are escaped
            params[f"{bind}_path"] = pointer(name)
            matches.append(f"json_extract_string(_extra, ${bind}_path) = ${bind}")
        conditions.append("(" + " OR ".join(matches) + ")" if matches else "false")
    for index, (name, host) in enumerate(q.hosts):
        bind = f"h{index}"
        found = host_sql(text_expr(name, columns, f"{bind}_path", params))  # _extra: always there
        if host is None:
            conditions.append(f"{found} IS NULL")
        else:
            conditions.append(f"{found} = ${bind}")
            params[bind] = host
    for index, (name, value) in enumerate(q.missing_or):
        bind = f"m{index}"
        found = text_expr(name, columns, f"{bind}_path", params)
        conditions.append(f"({found} IS NULL OR {found} = ${bind})")
        params[bind] = value
    order = "DESC" if q.newest_first else "ASC"
    unordered = f"SELECT {select(columns)} FROM {source}"
    if conditions:
        unordered += " WHERE " + " AND ".join(conditions)
    sql = unordered + f" ORDER BY _time {order}, _id {order}"
    if q.limit is not None:
        sql += " LIMIT $limit"
        params["limit"] = q.limit
    return _Plan(sql, params, columns, unordered)


def _select_list(columns: dict[str, str]) -> str:
    # Timestamps come out as µs integers: formatting them here needs no time-zone library.
    parts = ["_id", "epoch_us(_received_at)", "epoch_us(_time)"]
    parts += [
        f"epoch_us({quote_identifier(c)})" if kind == "timestamp" else quote_identifier(c)
        for c, kind in columns.items()
    ]
    return ", ".join([*parts, "_extra"])


def _rows(
    data_dir: Path, sink: LakeConfig, q: LakeQuery
) -> tuple[list[str], dict[str, str], Iterator[tuple[Any, ...]]] | None:
    import duckdb

    catalog = _state(data_dir)
    if catalog is None:
        return None
    lake_root = Path(sink.path) if sink.path else data_dir / "lake"
    db = duckdb.connect()
    try:
        plan = _plan(db, catalog, lake_root, q, _select_list)
    finally:
        catalog.close()
    if plan is None:
        db.close()
        return None
    names = list(plan.columns)
    cursor = db.execute(plan.sql, plan.params)

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            while True:
                chunk = cursor.fetchmany(10_000)
                if not chunk:
                    return
                yield from chunk
        finally:
            db.close()

    return names, plan.columns, rows()


def _event(row: tuple[Any, ...], names: list[str], types: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, value in zip(names, row[3:-1], strict=True):
        if value is None:
            continue
        if types[name] == "json":
            value = _json_decoder.decode(value)
        elif types[name] == "timestamp":
            value = iso(value)
        data[name] = value
    if row[-1]:
        data.update(_json_decoder.decode(row[-1]))
    return {"id": row[0], "received_at": iso(row[1]), "time": iso(row[2]), "data": data}


def _encode_cursor(time_us: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([time_us, event_id])).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        time_us, event_id = msgspec.json.decode(raw, type=tuple[int, str])
        if not -(2**63) <= time_us < 2**63:
            raise ValueError("out of range")
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise QueryError("invalid_cursor", "the cursor is not one this API returned") from exc
    return time_us, event_id


def events_query(sink_id: str, stream: str, params: list[tuple[str, str]]) -> tuple[LakeQuery, int]:
    """The selection and page size ``GET /v1/streams/{stream}/events`` asks for (``since``,
    ``until``, ``field=value`` filters, ``cursor``, ``limit``); ``QueryError`` for a bad one.
    The query's ``limit`` is one more than the page's, to know whether another page follows."""
    values = dict(params)
    limit = parse_limit(values)
    q = LakeQuery(
        sink_id,
        stream,
        since_us=parse_time_param("since", values["since"]) if values.get("since") else None,
        until_us=parse_time_param("until", values["until"]) if values.get("until") else None,
        where=[(k, v) for k, v in params if k not in RESERVED_PARAMS],
        after=_decode_cursor(values["cursor"]) if values.get("cursor") else None,
        limit=limit + 1,
    )
    return q, limit


def query_events(
    data_dir: Path, sink_id: str, sink: LakeConfig, stream: str, params: list[tuple[str, str]]
) -> dict[str, Any]:
    """The ``GET /v1/streams/{stream}/events`` answer: newest first, with a cursor."""
    q, limit = events_query(sink_id, stream, params)
    found = _rows(data_dir, sink, q)
    if found is None:
        return {"stream": stream, "events": [], "next_cursor": None}
    names, types, rows = found
    fetched = list(rows)
    events = [_event(row, names, types) for row in fetched[:limit]]
    next_cursor = None
    if len(fetched) > limit:
        last = fetched[limit - 1]
        next_cursor = _encode_cursor(last[2], last[0])
    return {"stream": stream, "events": events, "next_cursor": next_cursor}


def count_events(data_dir: Path, sink_id: str, sink: LakeConfig, q: LakeQuery) -> int:
    """How many events the selection holds."""
    import duckdb

    catalog = _state(data_dir)
    if catalog is None:
        return 0
    lake_root = Path(sink.path) if sink.path else data_dir / "lake"
    db = duckdb.connect()
    try:
        plan = _plan(db, catalog, lake_root, q, lambda _columns: "count(*)")
        if plan is None:
            return 0
        plan.params.pop("limit", None)
        row = db.execute(plan.unordered, plan.params).fetchone()
        return int(row[0]) if row else 0
    finally:
        catalog.close()
        db.close()


# A spreadsheet takes a cell starting with one of these as a formula (=HYPERLINK(...), +cmd|...);
# the values come from anonymous senders (page hits), so an export meant for a spreadsheet
# prefixes such text with an apostrophe, which the spreadsheet shows as plain text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _csv_value(value: Any, kind: str) -> Any:
    if value is None:
        return ""
    if kind == "bool":
        return "true" if value else "false"
    if kind == "timestamp":
        return iso(value)
    return value


def export_csv(
    data_dir: Path,
    sink_id: str,
    sink: LakeConfig,
    q: LakeQuery,
    out: TextIO,
    progress: Callable[[int], None] | None = None,
    *,
    safe: bool = False,
) -> int:
    """Write the selection as CSV (RFC 4180, header row, oldest first); returns the rows written.
    ``safe``: text cells that a spreadsheet would run as formulas get a leading ``'``."""
    q.newest_first = False
    writer = csv.writer(out, lineterminator="\r\n")
    found = _rows(data_dir, sink, q)
    if found is None:
        writer.writerow(["id", "received_at", "time", "_extra"])
        return 0
    names, types, rows = found
    writer.writerow(["id", "received_at", "time", *names, "_extra"])
    written = 0
    for row in rows:
        user = [_csv_value(v, types[n]) for n, v in zip(names, row[3:-1], strict=True)]
        if safe:
            user = [spreadsheet_safe(v) for v in user]
        writer.writerow([row[0], iso(row[1]), iso(row[2]), *user, row[-1] or ""])
        written += 1
        if progress is not None and written % 1000 == 0:
            progress(1000)
    if progress is not None:
        progress(written % 1000)
    return written


__all__ = [
    "LakeQuery",
    "QueryError",
    "count_events",
    "export_csv",
    "query_events",
    "spreadsheet_safe",
]
