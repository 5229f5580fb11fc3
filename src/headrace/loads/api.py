"""``/v1/loads``: the batch history over HTTP (guarded by the pipeline's read tokens).

GET  /v1/loads?status=&table=&source=&before=&limit=   jobs, newest first
GET  /v1/loads/{id}                                   one job
POST /v1/loads/{id}/retry                             run a finished job again
POST /v1/loads/{id}/cancel                            stop a job that is not loading

The operations are taken only from this server's own pages or from clients outside a browser
(``web.access.cross_site``).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from headrace.errors import RequestRejected
from headrace.loads.history import STATUSES, LoadHistory
from headrace.web.access import ReadAccess, cross_site, require_read
from headrace.web.asgi import Receive, Scope, Send, encode_json, send_body, send_error

_ONE = re.compile(r"^/v1/loads/(\d{1,18})(?:/(retry|cancel))?/?$")
CROSS_SITE = RequestRejected(
    403, "cross_site_request", "operations are taken only from this server's pages"
)


class LoadsApi:
    """``/v1/loads`` as an ASGI handler; each request is answered from a thread."""

    def __init__(self, data_dir: Path, access: ReadAccess) -> None:
        self.data_dir = data_dir
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        if method != "GET" and cross_site(scope):
            await send_error(send, CROSS_SITE)
            return
        if not await require_read(self.access, scope, send):
            return
        query = scope.get("query_string", b"").decode("latin-1")
        status, reply = await asyncio.to_thread(
            handle_loads_request, self.data_dir, method, scope["path"], query
        )
        await send_body(send, status, encode_json(reply))


def _error(status: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": reason, "message": message}


def handle_loads_request(
    data_dir: Path, method: str, path: str, query: str
) -> tuple[int, dict[str, Any]]:
    """The status and JSON body answering one ``/v1/loads`` request."""
    exists = (data_dir / "loads.db").exists()
    history = LoadHistory.in_data_dir(data_dir) if exists else None
    try:
        if path.rstrip("/") == "/v1/loads":
            if method != "GET":
                return _error(405, "method_not_allowed", f"{method} is not allowed here")
            return _list(history, dict(parse_qsl(query)))
        match = _ONE.match(path)
        if match is None:
            return _error(404, "not_found", f"nothing at {path}")
        job_id, action = int(match.group(1)), match.group(2)
        if history is None:
            return _error(404, "unknown_load", f"no load job {job_id}")
        if action is None and method == "GET":
            try:
                return 200, history.get(job_id).public()
            except KeyError:
                return _error(404, "unknown_load", f"no load job {job_id}")
        if action is None or method != "POST":
            return _error(405, "method_not_allowed", f"{method} is not allowed here")
        try:
            job = history.retry(job_id) if action == "retry" else history.cancel(job_id)
        except KeyError:
            return _error(404, "unknown_load", f"no load job {job_id}")
        except ValueError as exc:
            return _error(409, f"cannot_{action}", str(exc))
        return 200, job.public()
    finally:
        if history is not None:
            history.close()


def _list(history: LoadHistory | None, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    status = params.get("status")
    if status is not None and status not in STATUSES:
        return _error(400, "invalid_parameter", f"status is one of {', '.join(STATUSES)}")
    limit_text, before_text = params.get("limit", "50"), params.get("before")
    if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= 1000):
        return _error(400, "invalid_parameter", "limit is 1 to 1000")
    if before_text is not None and not (before_text.isascii() and before_text.isdigit()):
        return _error(400, "invalid_parameter", "before is a load id")
    if history is None:
        return 200, {"loads": [], "next_before": None}
    limit = int(limit_text)
    jobs = history.find(
        status=status,
        table=params.get("table"),
        source=params.get("source"),
        before=int(before_text) if before_text else None,
        limit=limit,
    )
    return 200, {
        "loads": [j.public() for j in jobs],
        "next_before": jobs[-1].id if len(jobs) == limit else None,
    }
