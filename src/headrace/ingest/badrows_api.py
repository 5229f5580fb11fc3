"""``GET /v1/badrows?source=&reason=&replayed=&after=&limit=``: the kept refusals, oldest first
(with the read credentials, ``web.access``); ``next_after`` pages on."""

from __future__ import annotations

import asyncio

from headrace.errors import RequestRejected
from headrace.ingest.badrows import BadRowStore
from headrace.web.access import ReadAccess, require_read
from headrace.web.asgi import Scope, Send, send_error, send_json
from headrace.web.request import query_params, whole

INVALID_PAGE = RequestRejected(
    400, "invalid_parameter", "limit is 1 to 1000; after is a whole number"
)


class BadRowsApi:
    """The bad-rows listing of one ingest worker."""

    def __init__(self, store: BadRowStore, access: ReadAccess) -> None:
        self.store = store
        self.access = access

    async def __call__(self, scope: Scope, send: Send) -> None:
        """Answer a listing (guarded by the read credentials)."""
        if not await require_read(self.access, scope, send):
            return
        params = dict(query_params(scope))
        limit_text, after_text = params.get("limit", "100"), params.get("after", "0")
        if not (whole(limit_text, 4) and whole(after_text, 18) and 1 <= int(limit_text) <= 1000):
            await send_error(send, INVALID_PAGE)
            return
        limit, after = int(limit_text), int(after_text)
        rows = await asyncio.to_thread(
            self.store.find, source=params.get("source"), reason=params.get("reason"),
            include_replayed=params.get("replayed") == "true", after_id=after, limit=limit,
        )  # fmt: skip
        body = {
            "bad_rows": [r.as_dict() for r in rows],
            "next_after": rows[-1].id if len(rows) == limit else None,
        }
        await send_json(send, body)
