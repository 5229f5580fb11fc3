"""The dashboard's HTTP side, served by every ingest worker beside ingest.

    GET /                                         the dashboard (a static page; data from below)
    GET /favicon.ico                              its icon (public, as the tracker)
    GET /dashboard/static/<file>                  its scripts, styles and the vendored uPlot
    GET /demo                                     a page that uses the browser tracker
    GET /sdk/headrace.js                          the browser tracker (public, cacheable)
    GET /api/dashboard/overview                   sources, sinks, streams, failures (since, until)
    GET /api/dashboard/streams[/{stream}/...]     the stream views (``stream_views``)
    GET /api/dashboard/pagehits                   the page-hits view (``pagehits``)
    GET /api/dashboard/deadletters[/{id}]         dead letters: total, filters, pages (``failures``)
    GET /api/dashboard/badrows[/{id}]             bad rows: total, filters, pages (``failures``)
    GET /v1/deadletters                           dead letters, oldest first (like /v1/badrows)

Every path but the tracker and the icon needs the read credentials (``web.access.ReadAccess``).
Query strings use the events API's words: ``since``, ``until`` (ISO 8601 or epoch), ``sink``,
and ``field=value`` filters; ``group_by``, ``field`` and ``top`` where they apply.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from headrace.buffer.base import Buffer
from headrace.config.models import Pipeline
from headrace.dashboard.http import (
    GUARDED,
    NOSNIFF,
    DashboardError,
    json_error,
    send_body,
    send_json,
)
from headrace.dashboard.stream_views import StreamViews, time_window
from headrace.errors import RequestRejected
from headrace.query.lake import QueryError
from headrace.telemetry import metrics as m
from headrace.web.access import MISDIRECTED, ReadAccess
from headrace.web.asgi import Receive, Scope, Send
from headrace.web.request import header, whole

STATIC = Path(__file__).parent / "static"
PREFIXES = ("/dashboard/", "/api/dashboard/", "/sdk/", "/demo/")
EXACT = frozenset({"/", "/demo", "/v1/deadletters", "/favicon.ico"})
HOUR_US = 3_600_000_000
PUBLIC = {"/sdk/headrace.js": "sdk/headrace.js", "/favicon.ico": "favicon.svg"}


def _load_static() -> dict[str, tuple[bytes, bytes]]:
    files: dict[str, tuple[bytes, bytes]] = {}
    for path in STATIC.rglob("*"):
        if path.is_file():
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind.endswith("javascript"):
                kind += "; charset=utf-8"
            files[path.relative_to(STATIC).as_posix()] = (path.read_bytes(), kind.encode())
    return files


class Dashboard:
    """The dashboard routes of one ingest worker."""

    def __init__(
        self,
        pipeline: Pipeline,
        data_dir: Path,
        access: ReadAccess,
        metrics: tuple[str, m.Registry] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.data_dir = data_dir
        self.access = access
        self.own_metrics = metrics
        self.static = _load_static()
        self.streams = StreamViews(pipeline, data_dir)
        self._buffer: Buffer | None = None  # opened on the first overview (its connection)

    def buffer(self) -> Buffer:
        """The pipeline's buffer, for what it knows of delivery across machines."""
        if self._buffer is None:
            from headrace.buffer import open_buffer

            self._buffer = open_buffer(self.pipeline.buffer, self.data_dir)
        return self._buffer

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is the dashboard's."""
        return path in EXACT or path.startswith(PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await json_error(send, 405, "method_not_allowed", "the dashboard only answers GET")
            return
        if path in PUBLIC:
            await self._file(send, PUBLIC[path], public=True)
            return
        if self.access.misdirected(header(scope, b"host")):
            await json_error(send, 403, "misdirected_host", MISDIRECTED)
            return
        if not self.access.allows(header(scope, self.access.header_bytes)):
            await json_error(
                send, 401, "unauthorized_read", "the dashboard needs the read credentials",
                [(b"www-authenticate", b'Basic realm="headrace", charset="UTF-8"')],
            )  # fmt: skip
            return
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            await self._route(path, params, send)
        except QueryError as exc:
            status = 503 if exc.reason in ("sink_unreachable", "unavailable") else exc.status
            await json_error(send, status, exc.reason, str(exc))
        except DashboardError as exc:
            await json_error(send, exc.status, exc.reason, str(exc))

    async def _route(self, path: str, params: list[tuple[str, str]], send: Send) -> None:
        if path == "/":
            await self._file(send, "index.html")
        elif path == "/demo" or path.startswith("/demo/"):  # /demo/...: its own SPA routes
            await self._file(send, "demo.html")
        elif path.startswith("/dashboard/static/"):
            await self._file(send, path.removeprefix("/dashboard/static/"))
        elif path == "/api/dashboard/overview":
            await self._overview(params, send)
        elif path == "/api/dashboard/pagehits":
            await self.streams.pagehits(params, send)
        elif path == "/api/dashboard/streams":
            await send_json(send, await asyncio.to_thread(self.streams.known_streams))
        elif path.startswith("/api/dashboard/streams/"):
            stream, _, action = path.removeprefix("/api/dashboard/streams/").partition("/")
            await self.streams.stream(unquote(stream), action, params, send)
        elif path.startswith(("/api/dashboard/deadletters", "/api/dashboard/badrows")):
            await self._failures(path.removeprefix("/api/dashboard/"), params, send)
        elif path == "/v1/deadletters":
            await self._dead_letters(params, send)
        else:
            raise DashboardError(404, "not_found", f"nothing at {path}")

    async def _file(self, send: Send, name: str, *, public: bool = False) -> None:
        found = self.static.get(name)
        if found is None or name.startswith("."):
            raise DashboardError(404, "not_found", f"no file {name}")
        body, kind = found
        cache = b"public, max-age=300" if public else b"no-cache"
        headers = [(b"content-type", kind), (b"cache-control", cache)]
        if public:
            headers += [(b"access-control-allow-origin", b"*"), NOSNIFF]
        else:
            headers += GUARDED
        await send_body(send, 200, body, headers)

    async def _overview(self, params: list[tuple[str, str]], send: Send) -> None:
        from headrace.dashboard.overview import overview

        values = dict(params)
        since, until = time_window(values, HOUR_US)
        doc = await asyncio.to_thread(
            overview, self.pipeline, self.data_dir, self.own_metrics,
            since_us=since, until_us=until if values.get("until") else None, buffer=self.buffer(),
        )  # fmt: skip
        await send_json(send, doc)

    async def _failures(self, rest: str, params: list[tuple[str, str]], send: Send) -> None:
        from headrace.dashboard import failures as f

        kind, _, row_id = rest.partition("/")
        store = f.PAGES.get(kind)
        if store is None:
            raise DashboardError(404, "not_found", f"nothing at /api/dashboard/{rest}")
        if row_id:
            if not whole(row_id, 18):
                raise DashboardError(404, "not_found", f"no {kind} row {row_id}")
            found = await asyncio.to_thread(f.get_failure, self.data_dir, store, int(row_id))
            if found is None:
                raise DashboardError(404, "not_found", f"no {kind} row {row_id}")
            await send_json(send, found)
            return
        try:
            doc = await asyncio.to_thread(f.list_failures, self.data_dir, store, dict(params))
        except f.FailureQueryError as exc:
            raise DashboardError(400, "invalid_parameter", str(exc)) from exc
        await send_json(send, doc)

    async def _dead_letters(self, params: list[tuple[str, str]], send: Send) -> None:
        from headrace.storage.failures import DEAD_LETTERS
        from headrace.web.failures import listing

        try:
            doc = await asyncio.to_thread(listing, self.data_dir, DEAD_LETTERS, dict(params))
        except RequestRejected as exc:
            raise DashboardError(exc.status, exc.reason, exc.message) from exc
        await send_json(send, doc)
