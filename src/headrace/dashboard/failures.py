"""The dashboard's pages of kept failures: dead letters (``state.db``, events a sink refused for
good) and bad rows (``badrows.db``, events refused at ingest). The SQL is the failures query
builder's (``storage.failures``); this module shapes its answers for the pages.

Each page answers newest first, with the total that matches the filters, the filters' choices
(each counted under the other filters), and a keyset cursor (``before`` = the last id shown), so
page 500 costs what page 1 does.

    GET /api/dashboard/deadletters?sink=&reason=&stream=&replayed=true&before=&limit=
    GET /api/dashboard/deadletters/{id}
    GET /api/dashboard/badrows?source=&reason=&stream=&replayed=true&before=&limit=
    GET /api/dashboard/badrows/{id}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from headrace.storage import failures
from headrace.storage.failures import BAD_ROWS, DEAD_LETTERS, FailureFilter, FailureKind

PREVIEW = 2000  # characters of an event or a raw body shown in a list; the detail has it all
MAX_PAGE = 500
PAGES = {"deadletters": DEAD_LETTERS, "badrows": BAD_ROWS}  # the path's word, the kind
# the lake names the field a value did not fit: 'field "total" is declared float64; got str'
_FIELD_IN_ERROR = re.compile(r'field "((?:[^"\\]|\\.)*)"')


class FailureQueryError(Exception):
    """A listing that cannot be answered as asked (a 400)."""


def _page_bounds(values: dict[str, str]) -> tuple[int, int | None]:
    limit_text, before_text = values.get("limit", "50"), values.get("before", "")
    if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= MAX_PAGE):
        raise FailureQueryError(f"limit is a whole number from 1 to {MAX_PAGE}")
    if before_text and not (
        before_text.isascii() and before_text.isdigit() and len(before_text) <= 18
    ):
        raise FailureQueryError("before is the id of the last row of the previous page")
    return int(limit_text), int(before_text) if before_text else None


def list_failures(data_dir: Path, kind: FailureKind, values: dict[str, str]) -> dict[str, Any]:
    """A page of failures, newest first, with the matching total and the filters' choices."""
    limit, before = _page_bounds(values)
    found = FailureFilter.from_params(kind, values)
    columns = failures.filter_columns(kind)
    with failures.reading(data_dir, kind) as conn:
        if conn is None:  # nothing kept yet
            return {"total": 0, "rows": [], "next_before": None,
                    "choices": {column: [] for column in columns}}  # fmt: skip
        total = failures.count(conn, kind, found)
        rows = failures.select_page(conn, kind, found, limit=limit, before_id=before)
        choices = {
            column: [
                {"value": v, "count": n} for v, n in failures.choices(conn, kind, found, column)
            ]
            for column in columns
        }
    shown = [_row(kind, row, preview=True) for row in rows]
    return {
        "total": total,
        "rows": shown,
        "next_before": shown[-1]["id"] if len(shown) == limit else None,
        "choices": choices,
    }


def get_failure(data_dir: Path, kind: FailureKind, row_id: int) -> dict[str, Any] | None:
    """One failure, whole."""
    with failures.reading(data_dir, kind) as conn:
        row = failures.select_one(conn, kind, row_id) if conn is not None else None
    return _row(kind, row, preview=False) if row is not None else None


def _row(kind: FailureKind, row: tuple[Any, ...], *, preview: bool) -> dict[str, Any]:
    """A row as JSON: its body as text (cut in a list), its failing field path, its time."""
    found = dict(zip(failures.column_names(kind), row, strict=True))
    body = found.pop(kind.body)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    found["kind"] = kind.name
    found["body"] = text[:PREVIEW] if preview else text
    found["body_cut"] = preview and len(text) > PREVIEW
    found["failed_at_us"] = found[kind.at]
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
