"""The dashboard's HTTP side, served by every ingest worker beside ingest.

    GET /                                         the dashboard (a static page; data from below)
    GET /dashboard/static/<file>                  its script, styles and the vendored uPlot
    GET /demo                                     a page that uses the browser tracker
    GET /sdk/headrace.js                          the browser tracker (public, cacheable)
    GET /api/dashboard/overview                   sources, sinks, streams, failures
    GET /api/dashboard/streams/{stream}/events    recent events (the events API, by lake sink)
    GET /api/dashboard/streams/{stream}/counts    count over time, optionally grouped by a field
    GET /api/dashboard/streams/{stream}/top       commonest values of a field
    GET /api/dashboard/streams/{stream}/columns   the stream's columns
    GET /api/dashboard/streams/{stream}/export.csv   the current filter as CSV (streamed)
    GET /api/dashboard/pagehits                   hits over time, top pages, top referrers
    GET /v1/deadletters                           dead letters, oldest first (like /v1/badrows)

Every path but the tracker needs the read credentials (``access.ReadAccess``). Query strings use
the events API's words: ``since``, ``until`` (ISO 8601 or epoch), ``sink``, and ``field=value``
filters; ``group_by``, ``field`` and ``top`` where they apply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import mimetypes
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qsl, unquote

import msgspec

from headrace.config.models import NAME_PATTERN, LakeSink, Pipeline, PostgresSink
from headrace.dashboard.access import MISDIRECTED, ReadAccess
from headrace.dashboard.readers import StreamReader
from headrace.query.lake import RESERVED_PARAMS, LakeQuery, QueryError, parse_time_param
from headrace.telemetry import metrics as m

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

STATIC = Path(__file__).parent / "static"
PREFIXES = ("/dashboard/", "/api/dashboard/", "/sdk/", "/demo/")
EXACT = frozenset({"/", "/demo", "/v1/deadletters"})
DASHBOARD_PARAMS = RESERVED_PARAMS | {"sink", "group_by", "field", "top", "bucket"}
DEFAULT_RANGE_US = 24 * 3_600_000_000
MAX_TOP = 100
_json = msgspec.json.Encoder()
Readable = LakeSink | PostgresSink
JSON = [(b"content-type", b"application/json")]


class DashboardError(Exception):
    """A dashboard request that cannot be answered as asked."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


# The dashboard's own pages and answers: never framed by another site (clickjacking an operator's
# retry button), never sniffed as another type, scripts only from this server. uPlot sets inline
# styles, hence style-src 'unsafe-inline'. The tracker script gets only nosniff: customer pages
# on other sites load it.
NOSNIFF = (b"x-content-type-options", b"nosniff")
GUARDED = [
    NOSNIFF,
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


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

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is the dashboard's."""
        return path in EXACT or path.startswith(PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await _json_error(send, 405, "method_not_allowed", "the dashboard only answers GET")
            return
        if path == "/sdk/headrace.js":
            await self._file(send, "sdk/headrace.js", public=True)
            return
        if self.access.misdirected(_header(scope, b"host")):
            await _json_error(send, 403, "misdirected_host", MISDIRECTED)
            return
        if not self.access.allows(_header(scope, self.access.header_bytes)):
            await _json_error(
                send, 401, "unauthorized_read", "the dashboard needs the read credentials",
                [(b"www-authenticate", b'Basic realm="headrace", charset="UTF-8"')],
            )  # fmt: skip
            return
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            await self._route(path, params, send)
        except QueryError as exc:
            status = 503 if exc.reason in ("sink_unreachable", "unavailable") else 400
            await _json_error(send, status, exc.reason, str(exc))
        except DashboardError as exc:
            await _json_error(send, exc.status, exc.reason, str(exc))

    async def _route(self, path: str, params: list[tuple[str, str]], send: Send) -> None:
        if path == "/":
            await self._file(send, "index.html")
        elif path == "/demo" or path.startswith("/demo/"):  # /demo/...: its own SPA routes
            await self._file(send, "demo.html")
        elif path.startswith("/dashboard/static/"):
            await self._file(send, path.removeprefix("/dashboard/static/"))
        elif path == "/api/dashboard/overview":
            from headrace.dashboard.overview import overview

            doc = await asyncio.to_thread(overview, self.pipeline, self.data_dir, self.own_metrics)
            await _send(send, 200, _json.encode(doc))
        elif path == "/api/dashboard/pagehits":
            await self._pagehits(params, send)
        elif path == "/v1/deadletters":
            await self._dead_letters(params, send)
        elif path.startswith("/api/dashboard/streams/"):
            stream, _, action = path.removeprefix("/api/dashboard/streams/").partition("/")
            await self._stream(unquote(stream), action, params, send)
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
        await _send(send, 200, body, headers)

    def _sink_for(self, stream: str, params: dict[str, str]) -> tuple[str, Readable]:
        """The sink to read ``stream`` from: ``sink=`` if given, else the first lake (or
        PostgreSQL) sink that receives it."""
        if not NAME_PATTERN.match(stream):
            raise DashboardError(400, "invalid_stream", f'"{stream}" is not a stream name')
        wanted = params.get("sink")
        readable: list[tuple[str, Readable]] = [
            (i, s) for i, s in self.pipeline.sinks.items() if isinstance(s, LakeSink | PostgresSink)
        ]
        if wanted:
            for sink_id, sink in readable:
                if sink_id == wanted:
                    return sink_id, sink
            raise DashboardError(404, "unknown_sink", f'no lake or PostgreSQL sink "{wanted}"')
        readable.sort(key=lambda item: not isinstance(item[1], LakeSink))  # the lake first
        for sink_id, sink in readable:
            if any(self._feeds(source, stream) for source in sink.inputs):
                return sink_id, sink
        for sink_id, sink in readable:
            if isinstance(sink, LakeSink):
                return sink_id, sink
        raise DashboardError(404, "not_queryable", "no lake or PostgreSQL sink stores this stream")

    def _feeds(self, source_id: str, stream: str) -> bool:
        source = self.pipeline.sources.get(source_id)
        return source_id == stream or bool(source and source.path and "{stream}" in source.path)

    def _query(self, sink_id: str, stream: str, params: list[tuple[str, str]]) -> LakeQuery:
        values = dict(params)
        until = parse_time_param("until", values["until"]) if values.get("until") else None
        until = until if until is not None else time.time_ns() // 1000 + 1
        since = parse_time_param("since", values["since"]) if values.get("since") else None
        since = since if since is not None else until - DEFAULT_RANGE_US
        if since >= until:
            raise QueryError("invalid_range", "since must be before until")
        where = [(k, v) for k, v in params if k not in DASHBOARD_PARAMS]
        return LakeQuery(sink_id, stream, since_us=since, until_us=until, where=where)

    async def _stream(
        self, stream: str, action: str, params: list[tuple[str, str]], send: Send
    ) -> None:
        from headrace.dashboard.readers import open_reader

        values = dict(params)
        sink_id, sink = self._sink_for(stream, values)
        if action not in ("events", "counts", "top", "columns", "export.csv"):
            raise DashboardError(404, "not_found", f"no stream view {action}")
        if action == "top" and not values.get("field"):
            raise DashboardError(400, "missing_field", "top needs field=<name>")
        top = _top(values)
        if action == "events":
            # the events API's own range: none unless asked (the cursor bounds the page)
            q = LakeQuery(sink_id, stream)
            q.since_us = parse_time_param("since", values["since"]) if values.get("since") else None
            q.until_us = parse_time_param("until", values["until"]) if values.get("until") else None
            q.where = [(k, v) for k, v in params if k not in DASHBOARD_PARAMS]
        else:
            q = self._query(sink_id, stream, params)
        if action == "export.csv":
            # opened in the export's thread: for PostgreSQL that is a connection and a catalog
            # query, which must not stall the event loop (and every ingest request with it)
            opener = functools.partial(open_reader, self.data_dir, sink_id, sink, stream)
            await self._export(opener, q, stream, send)
            return

        def run() -> dict[str, Any]:
            reader = open_reader(self.data_dir, sink_id, sink, stream)
            try:
                if action == "columns":
                    return {"columns": reader.columns()}
                if action == "events":
                    return reader.events(q, [(k, v) for k, v in params if k != "sink"])
                if action == "top":
                    return {"field": values["field"], "values": reader.top(q, values["field"], top)}
                return reader.counts(q, values.get("group_by") or None)
            finally:
                reader.close()

        doc = await asyncio.to_thread(run)
        await _send(send, 200, _json.encode({**doc, "stream": stream, "sink": sink_id}))

    async def _pagehits(self, params: list[tuple[str, str]], send: Send) -> None:
        from headrace.dashboard.readers import open_reader, page_hits

        values = dict(params)
        stream = values.get("stream") or "analytics"
        sink_id, sink = self._sink_for(stream, values)
        q = self._query(sink_id, stream, [(k, v) for k, v in params if k != "stream"])
        top = _top(values)

        def run() -> dict[str, Any]:
            reader = open_reader(self.data_dir, sink_id, sink, stream)
            try:
                return page_hits(reader, q, top)
            finally:
                reader.close()

        doc = await asyncio.to_thread(run)
        await _send(send, 200, _json.encode({"stream": stream, "sink": sink_id, **doc}))

    async def _export(
        self, opener: Callable[[], StreamReader], q: LakeQuery, stream: str, send: Send
    ) -> None:
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)

        def produce() -> None:
            out = _ChunkWriter(chunks)
            reader: StreamReader | None = None
            try:
                reader = opener()
                reader.export(q, cast(BinaryIO, out))
                out.flush()
                chunks.put(None)
            except BaseException as exc:  # handed to the sender, which ends the response
                chunks.put(exc)
            finally:
                if reader is not None:
                    reader.close()

        threading.Thread(target=produce, name="headrace-export", daemon=True).start()
        first = await asyncio.to_thread(chunks.get)
        if isinstance(first, BaseException):
            raise first
        name = f'attachment; filename="{stream}.csv"'.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/csv; charset=utf-8"), (b"content-disposition", name),
            *GUARDED]})  # fmt: skip
        item: bytes | BaseException | None = first
        while isinstance(item, bytes):
            await send({"type": "http.response.body", "body": item, "more_body": True})
            item = await asyncio.to_thread(chunks.get)
        # an error after the first bytes can only cut the body short: the client sees it end
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _dead_letters(self, params: list[tuple[str, str]], send: Send) -> None:
        from headrace.runtime.state import connect, list_dead_letters

        values = dict(params)
        limit_text, after_text = values.get("limit", "100"), values.get("after", "0")
        if not (_whole(limit_text, 4) and _whole(after_text, 18) and 1 <= int(limit_text) <= 1000):
            raise DashboardError(
                400, "invalid_parameter", "limit is 1 to 1000; after is a whole number"
            )
        limit = int(limit_text)
        path = self.data_dir / "state.db"

        def run() -> list[dict[str, Any]]:
            if not path.exists():
                return []
            conn = connect(path, readonly=True)
            try:
                rows = list_dead_letters(
                    conn, sink=values.get("sink"), reason=values.get("reason"),
                    include_replayed=values.get("replayed") == "true",
                    limit=limit, after_id=int(after_text),
                )  # fmt: skip
            finally:
                conn.close()
            return [{**dataclasses.asdict(r), "data": msgspec.json.decode(r.data)} for r in rows]

        found = await asyncio.to_thread(run)
        body = {
            "dead_letters": found,
            "next_after": found[-1]["id"] if len(found) == limit else None,
        }
        await _send(send, 200, _json.encode(body))


class _ChunkWriter(io.RawIOBase):
    """A binary stream that hands ~64 KiB chunks to a queue (the response waits on the queue)."""

    def __init__(self, out: queue.Queue[bytes | BaseException | None]) -> None:
        self.out = out
        self.parts: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.size += len(chunk)
        if self.size >= 65536:
            self.flush()
        return len(chunk)

    def flush(self) -> None:
        if self.parts:
            self.out.put(b"".join(self.parts))
            self.parts, self.size = [], 0


def _top(values: dict[str, str]) -> int:
    text = values.get("top", "10")
    if not _whole(text, 3) or not 1 <= int(text) <= MAX_TOP:
        raise DashboardError(400, "invalid_parameter", f"top is 1 to {MAX_TOP}")
    return int(text)


def _whole(text: str, digits: int) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= digits


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _send(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    length = (b"content-length", str(len(body)).encode())
    headers = headers or [*JSON, *GUARDED]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


async def _json_error(
    send: Send,
    status: int,
    reason: str,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = _json.encode({"error": reason, "message": message})
    await _send(send, status, body, [*JSON, *GUARDED, *(extra or [])])
