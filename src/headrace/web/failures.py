"""``GET /v1/deadletters`` and ``GET /v1/badrows``: the kept failures of one kind, oldest first,
as JSON. One listing serves both (``storage.failures`` builds the query); the kind names the
owner filter (``sink=`` for dead letters, ``source=`` for bad rows) and the list's key::

    GET /v1/deadletters?sink=&reason=&stream=&replayed=true&after=&limit=   {"dead_letters": [...]}
    GET /v1/badrows?source=&reason=&stream=&replayed=true&after=&limit=     {"bad_rows": [...]}

``next_after`` pages on (null on the last page). A dead letter's event is JSON; a bad row's raw
bytes are text (invalid UTF-8 replaced), as they may not be JSON at all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from headrace.errors import RequestRejected
from headrace.storage import failures
from headrace.storage.failures import BAD_ROWS, DEAD_LETTERS, FailureFilter, FailureKind
from headrace.web.access import ReadAccess, require_read
from headrace.web.asgi import Scope, Send, send_error, send_json
from headrace.web.request import query_params, whole

INVALID_PAGE = RequestRejected(
    400, "invalid_parameter", "limit is 1 to 1000; after is a whole number"
)
LIST_KEYS = {DEAD_LETTERS.name: "dead_letters", BAD_ROWS.name: "bad_rows"}


def listing(data_dir: Path, kind: FailureKind, values: dict[str, str]) -> dict[str, Any]:
    """A page of ``kind``'s failures as the query string ``values`` asks (``RequestRejected``
    400 for a bad page); reads SQLite, so call it from a thread."""
    limit_text, after_text = values.get("limit", "100"), values.get("after", "0")
    if not (whole(limit_text, 4) and whole(after_text, 18) and 1 <= int(limit_text) <= 1000):
        raise INVALID_PAGE
    limit = int(limit_text)
    found = FailureFilter.from_params(kind, values)
    with failures.reading(data_dir, kind) as conn:
        rows = (
            failures.select_page(conn, kind, found, limit=limit, after_id=int(after_text))
            if conn is not None
            else []
        )
    names = failures.column_names(kind)
    shown = [public_row(kind, dict(zip(names, row, strict=True))) for row in rows]
    return {
        LIST_KEYS[kind.name]: shown,
        "next_after": shown[-1]["id"] if len(shown) == limit else None,
    }


def public_row(kind: FailureKind, row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API shows it: a dead letter's event decoded, a bad row's bytes as text."""
    body = row[kind.body]
    if kind is DEAD_LETTERS:
        row[kind.body] = msgspec.json.decode(body)
    elif isinstance(body, bytes):
        row[kind.body] = body.decode("utf-8", "replace")
    return row


class FailuresApi:
    """The listing of one kind, guarded by the read credentials."""

    def __init__(self, kind: FailureKind, data_dir: Path, access: ReadAccess) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.access = access

    async def __call__(self, scope: Scope, send: Send) -> None:
        """Answer a listing."""
        if not await require_read(self.access, scope, send):
            return
        try:
            doc = await asyncio.to_thread(
                listing, self.data_dir, self.kind, dict(query_params(scope))
            )
        except RequestRejected as exc:
            await send_error(send, exc)
            return
        await send_json(send, doc)
