"""The ``bulk_export`` endpoint: a table-export event in, a load job recorded, 200 out.

``{"type": "data.full_table_exported" | "data.incremental_table_exported", "data": {"url": …,
"table": …}}``. The answer is 200 ``{"status": "processed", "load_id": …}`` only once the job is
committed to the batch history (SQLite, fsync'd); the download happens later, in the load
worker. Other event types answer 200 ``{"status": "skipped"}`` (the sender sends every kind of
event to one URL). ``data.url`` is used as JSON decoding gives it: ControlShift writes ``&`` as
``\\u0026``, which decoding already turns into ``&``, and documents no other escaping, so nothing
else is unescaped (an ``&amp;`` in the URL is the sender's and reaches the export server as is).
The same export delivered again (same table, kind and file) is recorded once.

Every 200 (processed, duplicate or skipped) carries ``x-controlshift-processed: 1``, as
ControlShift's reference receiver answers; a refusal (4xx) or failure (5xx) does not, since
nothing was taken and the sender should see only the error (and retry what it may).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from headrace.authorizers import RequestFacts, SourceAuth
from headrace.config.base import Limits
from headrace.config.bulk import BulkExportSource
from headrace.config.models import Pipeline
from headrace.errors import RequestRejected
from headrace.loads.history import LoadHistory
from headrace.telemetry import metrics as m
from headrace.web.asgi import JSON_HEADERS, Receive, Scope, Send, encode_json, send_body, send_error
from headrace.web.request import client_address, read_body, request_headers

log = logging.getLogger("headrace.loads.webhook")

KINDS = {"data.full_table_exported": "full", "data.incremental_table_exported": "incremental"}
TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_URL = 8192
RESERVED_PREFIXES = ("_headrace_", "_hr_")  # the marker table, staging and merge tables
PROCESSED_HEADERS = [(b"x-controlshift-processed", b"1")]  # on 200s only (module docstring)


def parse_export_event(body: bytes) -> tuple[str, str, str] | str:
    """``(kind, table, url)`` of an export event, or the event type to skip; raises
    ``RequestRejected`` (400) for a body that is not such an event."""
    try:
        event = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise RequestRejected(400, "invalid_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise RequestRejected(400, "invalid_webhook", 'expected an object with a string "type"')
    kind = KINDS.get(event["type"])
    if kind is None:
        return str(event["type"])
    data = event.get("data")
    if not isinstance(data, dict):
        raise RequestRejected(400, "invalid_webhook", '"data" must be an object')
    url, table = data.get("url"), data.get("table")
    if not isinstance(url, str) or not url.strip():
        raise RequestRejected(400, "invalid_webhook", '"data.url" must be a non-empty string')
    if not isinstance(table, str) or not TABLE.match(table):
        raise RequestRejected(
            400, "invalid_table", '"data.table" must be a name of letters, digits and "_"'
        )
    if table.lower().startswith(RESERVED_PREFIXES):
        raise RequestRejected(
            400,
            "reserved_table",
            f'"data.table" "{table}": names starting with _headrace_ or _hr_ are headrace\'s own '
            "(its load markers and staging tables)",
        )
    url = url.strip()
    if len(url) > MAX_URL:
        raise RequestRejected(400, "invalid_webhook", f'"data.url" is longer than {MAX_URL}')
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise RequestRejected(400, "invalid_url", f'"data.url" is not a URL: {exc}') from exc
    if scheme not in ("http", "https"):
        raise RequestRejected(
            422, "forbidden_scheme", f'only http(s) URLs are fetched, not "{scheme}:"'
        )
    return kind, table, url


def bulk_endpoints(
    pipeline: Pipeline, data_dir: Path, metrics: m.Registry | None = None
) -> dict[str, BulkExportEndpoint]:
    """The webhooks of the pipeline's ``bulk_export`` sources, by path."""
    return {
        source.path.rstrip("/") or "/": BulkExportEndpoint(
            sid, source, data_dir, pipeline.limits_for(source), metrics
        )
        for sid, source in pipeline.bulk_sources().items()
    }


class BulkExportEndpoint:
    """One ``bulk_export`` source's webhook: an ASGI handler; ``accept`` runs in a thread."""

    def __init__(
        self,
        source_id: str,
        source: BulkExportSource,
        data_dir: Path,
        limits: Limits,
        metrics: m.Registry | None = None,
    ) -> None:
        self.source_id = source_id
        self.source = source
        self.limits = limits
        self.auth = SourceAuth(source, source_id, data_dir) if source.auth else None
        self.header_names = frozenset(
            {b"content-type", b"content-length"} | (self.auth.header_names if self.auth else set())
        )
        self.data_dir = data_dir
        self.success_headers = PROCESSED_HEADERS
        self.metrics = metrics if metrics is not None else m.Registry()
        self._history: LoadHistory | None = None
        self._history_lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A table-export webhook: the load job is recorded durably before the 200."""
        if scope["method"] != "POST":
            await send_error(
                send, RequestRejected(405, "method_not_allowed", "POST a webhook here")
            )
            return
        try:
            headers = request_headers(scope, self.header_names)
            raw = await read_body(receive, headers, self.limits.max_body_bytes)
            query = scope.get("query_string", b"")
            facts = RequestFacts(headers, raw, client_address(scope), query)
            status, reply = await asyncio.to_thread(self.accept, facts, scope["path"])
        except RequestRejected as exc:
            self._count_request(exc.status)
            await send_error(send, exc)
            return
        except Exception:
            log.exception("bulk export webhook %s failed unexpectedly", self.source_id)
            self._count_request(500)
            await send_error(
                send, RequestRejected(500, "internal_error", "the request failed; nothing stored")
            )
            return
        self._count_request(status)
        await send_body(send, status, encode_json(reply), JSON_HEADERS + self.success_headers)

    def _count_request(self, status: int) -> None:
        self.metrics.add(
            m.key("headrace_requests_total", source=self.source_id, status=str(status))
        )

    @property
    def history(self) -> LoadHistory:
        # ``accept`` runs in several threads at once: unguarded, each of the first concurrent
        # deliveries opened a connection of its own (all but one leaked), racing to create the
        # database and switch it to WAL, which SQLite refuses with "database is locked".
        with self._history_lock:
            if self._history is None:
                self._history = LoadHistory.in_data_dir(self.data_dir)
            return self._history

    def accept(self, request: RequestFacts, path: str) -> tuple[int, dict[str, Any]]:
        """Authorize, parse and record; the status and JSON body of the answer."""
        if self.auth is not None:
            self.auth.verify(request, time.time(), "POST", path)
        parsed = parse_export_event(request.body)
        if isinstance(parsed, str):
            return 200, {"status": "skipped", "reason": "ignored_type", "type": parsed}
        kind, table, url = parsed
        if not self.source.table_allowed(table):
            if self.source.unknown_table == "reject":
                raise RequestRejected(
                    422, "table_not_allowed", f'table "{table}" is not in this source\'s tables'
                )
            job = self.history.record_skipped(
                self.source_id, table, kind, url, f'table "{table}" is not in tables'
            )
            return 200, {"status": "skipped", "reason": "table_not_allowed", "load_id": job.id}
        job, duplicate = self.history.record(
            self.source_id, table, kind, url, self.source.dedupe_window
        )
        reply: dict[str, Any] = {"status": "processed", "load_id": job.id}
        if duplicate:
            reply["duplicate"] = True
        return 200, reply
