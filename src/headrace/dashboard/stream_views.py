"""The dashboard's views of one stream, whichever lake or PostgreSQL sink stores it:

    GET /api/dashboard/streams                          the known streams (query.streams)
    GET /api/dashboard/streams/{stream}/events          a page of events (the events API)
    GET /api/dashboard/streams/{stream}/counts          count over time, optionally grouped
    GET /api/dashboard/streams/{stream}/top             commonest values of a field
    GET /api/dashboard/streams/{stream}/columns         the stream's columns
    GET /api/dashboard/streams/{stream}/fields          columns, how varied, which to group by
    GET /api/dashboard/streams/{stream}/export.csv      the current filter as CSV (streamed)
    GET /api/dashboard/pagehits                         the page-hits view (dashboard.pagehits)

A stream the sink does not know answers 404 ``unknown_stream`` (never "0 events"); a known
stream with nothing in the range answers its zeros.
"""

from __future__ import annotations

import asyncio
import functools
import io
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

from headrace.config.base import NAME_PATTERN
from headrace.config.models import Pipeline
from headrace.dashboard.http import GUARDED, DashboardError, send_json
from headrace.dashboard.readers import StreamReader, open_reader
from headrace.query.lake import RESERVED_PARAMS, LakeQuery, QueryError, parse_time_param
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.postgres.config import PostgresConfig
from headrace.web.asgi import Send
from headrace.web.request import whole

DASHBOARD_PARAMS = RESERVED_PARAMS | {"sink", "group_by", "field", "top", "bucket"}
PAGEHITS_PARAMS = DASHBOARD_PARAMS | {"stream", "referrer_domain"}
ACTIONS = ("events", "counts", "top", "columns", "fields", "export.csv")
DEFAULT_RANGE_US = 24 * 3_600_000_000
MAX_TOP = 100
Readable = LakeConfig | PostgresConfig
# A field is worth grouping a chart by when it splits the events into a few readable parts: a
# string with 2 to 50 distinct values, and fewer than half as many values as events (an id or
# a timestamp is not a group), or a boolean.
GROUPABLE_MAX = 50


class StreamViews:
    """The stream endpoints of one ingest worker's dashboard."""

    def __init__(self, pipeline: Pipeline, data_dir: Path) -> None:
        self.pipeline = pipeline
        self.data_dir = data_dir

    def sink_for(self, stream: str, params: dict[str, str]) -> tuple[str, Readable]:
        """The sink to read ``stream`` from: ``sink=`` if given, else the first lake (or
        PostgreSQL) sink that receives it, else the first lake."""
        if not NAME_PATTERN.match(stream):
            raise DashboardError(400, "invalid_stream", f'"{stream}" is not a stream name')
        wanted = params.get("sink")
        readable: list[tuple[str, Readable]] = [
            (i, s)
            for i, s in self.pipeline.sinks.items()
            if isinstance(s, LakeConfig | PostgresConfig)
        ]
        if wanted:
            for sink_id, sink in readable:
                if sink_id == wanted:
                    return sink_id, sink
            raise DashboardError(404, "unknown_sink", f'no lake or PostgreSQL sink "{wanted}"')
        readable.sort(key=lambda item: not isinstance(item[1], LakeConfig))  # the lake first
        for sink_id, sink in readable:
            if any(self._feeds(source, stream) for source in sink.inputs):
                return sink_id, sink
        for sink_id, sink in readable:
            if isinstance(sink, LakeConfig):
                return sink_id, sink
        raise DashboardError(404, "not_queryable", "no lake or PostgreSQL sink stores this stream")

    def _feeds(self, source_id: str, stream: str) -> bool:
        source = self.pipeline.sources.get(source_id)
        return source_id == stream or bool(source and source.path and "{stream}" in source.path)

    def query(
        self, sink_id: str, stream: str, params: list[tuple[str, str]], reserved: set[str]
    ) -> LakeQuery:
        """The selection the parameters ask for: ``since``..``until`` (the last 24 h by
        default) and ``field=value`` filters."""
        since, until = time_window(dict(params), DEFAULT_RANGE_US)
        where = [(k, v) for k, v in params if k not in reserved]
        return LakeQuery(sink_id, stream, since_us=since, until_us=until, where=where)

    def known_streams(self) -> dict[str, Any]:
        """``GET /api/dashboard/streams``."""
        from headrace.dashboard.catalog import known_streams

        return {"streams": known_streams(self.pipeline, self.data_dir)}

    def _require_known(self, sink_id: str, sink: Readable, stream: str) -> None:
        from headrace.query.streams import require_known

        require_known(self.pipeline, self.data_dir, sink_id, sink, stream)

    async def stream(
        self, stream: str, action: str, params: list[tuple[str, str]], send: Send
    ) -> None:
        """One of the ``/api/dashboard/streams/{stream}/...`` views."""
        values = dict(params)
        sink_id, sink = self.sink_for(stream, values)
        if action not in ACTIONS:
            raise DashboardError(404, "not_found", f"no stream view {action}")
        if action == "top" and not values.get("field"):
            raise DashboardError(400, "missing_field", "top needs field=<name>")
        top = parse_top(values)
        if action == "events":
            # the events API's own range: none unless asked (the cursor bounds the page)
            q = LakeQuery(sink_id, stream)
            q.since_us = parse_time_param("since", values["since"]) if values.get("since") else None
            q.until_us = parse_time_param("until", values["until"]) if values.get("until") else None
            q.where = [(k, v) for k, v in params if k not in DASHBOARD_PARAMS]
        else:
            q = self.query(sink_id, stream, params, DASHBOARD_PARAMS)
        await asyncio.to_thread(self._require_known, sink_id, sink, stream)
        if action == "export.csv":
            # opened in the export's thread: for PostgreSQL that is a connection and a catalog
            # query, which must not stall the event loop (and every ingest request with it)
            opener = functools.partial(open_reader, self.data_dir, sink_id, sink, stream)
            await _export(opener, q, stream, send)
            return

        def run() -> dict[str, Any]:
            reader = open_reader(self.data_dir, sink_id, sink, stream)
            try:
                if action == "columns":
                    return {"columns": reader.columns()}
                if action == "fields":
                    return {"fields": describe_fields(reader, q)}
                if action == "events":
                    return reader.events(q, [(k, v) for k, v in params if k != "sink"])
                if action == "top":
                    return {"field": values["field"], "values": reader.top(q, values["field"], top)}
                return reader.counts(q, values.get("group_by") or None)
            finally:
                reader.close()

        doc = await asyncio.to_thread(run)
        await send_json(send, {**doc, "stream": stream, "sink": sink_id})

    async def pagehits(self, params: list[tuple[str, str]], send: Send) -> None:
        """``GET /api/dashboard/pagehits``."""
        from headrace.dashboard.pagehits import domain_filter, page_hits

        values = dict(params)
        stream = values.get("stream") or "analytics"
        sink_id, sink = self.sink_for(stream, values)
        q = self.query(sink_id, stream, params, PAGEHITS_PARAMS)
        q.hosts = [domain_filter(v) for k, v in params if k == "referrer_domain"]
        top = parse_top(values)

        def run() -> dict[str, Any]:
            self._require_known(sink_id, sink, stream)
            reader = open_reader(self.data_dir, sink_id, sink, stream)
            try:
                return page_hits(reader, q, top)
            finally:
                reader.close()

        doc = await asyncio.to_thread(run)
        filters = [[k, v] for k, v in params if k not in PAGEHITS_PARAMS or k == "referrer_domain"]
        await send_json(send, {"stream": stream, "sink": sink_id, **doc,
                               "ingest_path": self._ingest_path(stream), "filters": filters,
                               "since_us": q.since_us, "until_us": q.until_us})  # fmt: skip

    def _ingest_path(self, stream: str) -> str:
        """Where a hit of ``stream`` is sent: its source's own path, else the events API."""
        source = self.pipeline.sources.get(stream)
        path = getattr(source, "path", None)
        if path and "{stream}" not in path:
            return str(path)
        return f"/v1/streams/{stream}/events"


def time_window(values: dict[str, str], default_us: int) -> tuple[int, int]:
    """``since``..``until`` in µs: until defaults to now, since to ``default_us`` before it."""
    until = parse_time_param("until", values["until"]) if values.get("until") else None
    until = until if until is not None else time.time_ns() // 1000 + 1
    since = parse_time_param("since", values["since"]) if values.get("since") else None
    since = since if since is not None else until - default_us
    if since >= until:
        raise QueryError("invalid_range", "since must be before until")
    return since, until


def describe_fields(reader: StreamReader, q: LakeQuery) -> list[dict[str, Any]]:
    """Each column with its type and, for text and booleans, about how many distinct values it
    takes in the selection, and whether a chart is worth grouping by it."""
    columns = reader.columns()
    textual = [n for n, kind in columns.items() if _kind(kind) in ("string", "bool")]
    rows, distinct = reader.cardinality(q, textual)
    out = []
    for name, kind in columns.items():
        found = distinct.get(name)
        if _kind(kind) == "bool":
            groupable = bool(found)
        else:
            groupable = found is not None and 2 <= found <= GROUPABLE_MAX and found * 2 <= rows
        out.append({"name": name, "type": kind, "distinct": found, "groupable": groupable})
    return out


def _kind(column_type: str) -> str:
    """A lake or PostgreSQL column type as "string", "bool" or something else."""
    lowered = column_type.lower()
    if lowered in ("string", "text", "character varying", "character", "uuid", "citext"):
        return "string"
    if lowered in ("bool", "boolean"):
        return "bool"
    return lowered


def parse_top(values: dict[str, str]) -> int:
    """The ``top`` parameter: 1 to ``MAX_TOP`` (default 10)."""
    text = values.get("top", "10")
    if not whole(text, 3) or not 1 <= int(text) <= MAX_TOP:
        raise DashboardError(400, "invalid_parameter", f"top is 1 to {MAX_TOP}")
    return int(text)


async def _export(
    opener: Callable[[], StreamReader], q: LakeQuery, stream: str, send: Send
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
