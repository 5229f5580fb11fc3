"""The dashboard's pages of kept failures: dead letters (``state.db``, events a sink refused for
good) and bad rows (``badrows.db``, events refused at ingest). Read-only SQL over those SQLite
tables; the stores' own modules write them.

Each page answers newest first, with the total that matches the filters, the filters' choices
(each counted under the other filters), and a keyset cursor (``before`` = the last id shown), so
page 500 costs what page 1 does. Values are always bound parameters; the only identifiers in the
SQL are this module's own constants.

    GET /api/dashboard/deadletters?sink=&reason=&replayed=true&before=&limit=
    GET /api/dashboard/deadletters/{id}
    GET /api/dashboard/badrows?source=&reason=&replayed=true&before=&limit=
    GET /api/dashboard/badrows/{id}
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREVIEW = 2000  # characters of an event or a raw body shown in a list; the detail has it all
MAX_PAGE = 500
# the lake names the field a value did not fit: 'field "total" is declared float64; got str'
_FIELD_IN_ERROR = re.compile(r'field "((?:[^"\\]|\\.)*)"')


class FailureQueryError(Exception):
    """A listing that cannot be answered as asked (a 400)."""


@dataclass(frozen=True)
class Store:
    """One failure table: where it lives and what its columns mean."""

    file: str
    table: str
    owner: str  # the column naming who refused (sink) or whose request it was (source)
    at: str  # the column of the failure's time, µs
    body: str  # the column holding the event (or raw request)


DEAD_LETTERS = Store("state.db", "dead_letters", "sink", "failed_at_us", "data")
BAD_ROWS = Store("badrows.db", "bad_rows", "source", "received_at_us", "raw")


def _connect(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    return conn


def _conditions(
    store: Store, filters: dict[str, str], include_replayed: bool, skip: str | None = None
) -> tuple[str, list[Any]]:
    """`` WHERE …`` for the filters (all but ``skip``) and its arguments."""
    parts: list[str] = []
    args: list[Any] = []
    for column in (store.owner, "reason", "stream"):
        value = filters.get(column)
        if value and column != skip:
            parts.append(f"{column} = ?")
            args.append(value)
    if not include_replayed:
        parts.append("replayed_at_us IS NULL")
    return (" WHERE " + " AND ".join(parts)) if parts else "", args


def _page_bounds(values: dict[str, str]) -> tuple[int, int | None]:
    limit_text, before_text = values.get("limit", "50"), values.get("before", "")
    if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= MAX_PAGE):
        raise FailureQueryError(f"limit is a whole number from 1 to {MAX_PAGE}")
    if before_text and not (
        before_text.isascii() and before_text.isdigit() and len(before_text) <= 18
    ):
        raise FailureQueryError("before is the id of the last row of the previous page")
    return int(limit_text), int(before_text) if before_text else None


def list_failures(data_dir: Path, store: Store, values: dict[str, str]) -> dict[str, Any]:
    """A page of failures, newest first, with the matching total and the filters' choices."""
    limit, before = _page_bounds(values)
    include_replayed = values.get("replayed") == "true"
    empty: dict[str, Any] = {"total": 0, "rows": [], "next_before": None,
                             "choices": {store.owner: [], "reason": [], "stream": []}}  # fmt: skip
    conn = _connect(data_dir / store.file)
    if conn is None:
        return empty
    try:
        where, args = _conditions(store, values, include_replayed)
        total = int(conn.execute(f"SELECT count(*) FROM {store.table}{where}", args).fetchone()[0])
        page_where = where + (" AND " if where else " WHERE ") + "id < ?" if before else where
        rows = conn.execute(
            f"SELECT * FROM {store.table}{page_where} ORDER BY id DESC LIMIT ?",
            [*args, *([before] if before else []), limit],
        ).fetchall()
        choices = {
            column: _choices(conn, store, values, include_replayed, column)
            for column in (store.owner, "reason", "stream")
        }
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return empty  # created with the first failure
        raise
    finally:
        conn.close()
    shown = [_row(store, row, preview=True) for row in rows]
    return {
        "total": total,
        "rows": shown,
        "next_before": shown[-1]["id"] if len(shown) == limit else None,
        "choices": choices,
    }


def _choices(
    conn: sqlite3.Connection, store: Store, values: dict[str, str], include_replayed: bool,
    column: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """The values of ``column`` under the other filters, commonest first."""
    where, args = _conditions(store, values, include_replayed, skip=column)
    found = conn.execute(
        f"SELECT {column}, count(*) AS n FROM {store.table}{where} "
        f"GROUP BY {column} ORDER BY n DESC, {column} LIMIT 200",
        args,
    )
    return [{"value": value, "count": int(n)} for value, n in found]


def get_failure(data_dir: Path, store: Store, row_id: int) -> dict[str, Any] | None:
    """One failure, whole."""
    conn = _connect(data_dir / store.file)
    if conn is None:
        return None
    try:
        row = conn.execute(f"SELECT * FROM {store.table} WHERE id = ?", (row_id,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return _row(store, row, preview=False) if row is not None else None


def _row(store: Store, row: sqlite3.Row, *, preview: bool) -> dict[str, Any]:
    """A row as JSON: its body as text (cut in a list), its failing field path, its time."""
    found = dict(zip(row.keys(), tuple(row), strict=True))
    body = found.pop(store.body)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    found["body"] = text[:PREVIEW] if preview else text
    found["body_cut"] = preview and len(text) > PREVIEW
    found["failed_at_us"] = found[store.at]
    found["field_path"] = _field_path(found)
    return found


def _field_path(row: dict[str, Any]) -> str | None:
    """Where in the event it failed: the kept path (bad rows; dead letters once their store
    keeps one), else the field a lake error names."""
    path = row.get("path") or row.get("field_path")
    if path:
        return str(path)
    match = _FIELD_IN_ERROR.search(str(row.get("error") or ""))
    if match:
        name = match.group(1).replace('\\"', '"')
        return "/" + name.replace("~", "~0").replace("/", "~1")
    return None
