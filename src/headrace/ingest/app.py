"""The HTTP side of headrace: a raw ASGI app (no framework router; routes are built once).

    POST /v1/streams/{stream}/events     ingest into a source (any stream on the default pipeline)
    POST <source path>                   ingest into a configured http source
    GET  /v1/streams/{stream}/events     read stored events (newest first, cursor pagination)
    GET  <source path>                   read a source with ``read:`` set (bounded time range)
    GET  /healthz  /readyz  /metrics     liveness, readiness, Prometheus metrics
    GET  /, /api/dashboard/..., /sdk/... the dashboard and the browser tracker (dashboard.routes)

A 2xx is sent only after the request is committed to the buffer with fsync. Every refusal is a
JSON body ``{"error": <reason>, "message": ...}`` with a specific status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec

from headrace.authorizers import RequestFacts, SourceAuth
from headrace.buffer import open_buffer
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest
from headrace.config.base import NAME_PATTERN, Limits
from headrace.config.models import Pipeline
from headrace.config.sources import HttpSource, RateLimit
from headrace.dashboard.routes import Dashboard
from headrace.errors import BufferFull, RequestRejected
from headrace.ids import event_ids, new_base_id
from headrace.ingest.badrows import REASONS, BadRowStore
from headrace.ingest.decode import Decoded, decompress, parse_events
from headrace.ingest.limits import CorsPolicy, TokenBucket
from headrace.ingest.mapping import Mapper, RequestMeta
from headrace.ingest.validation import SchemaCheck, Violation
from headrace.sinks.lake.config import LakeConfig
from headrace.telemetry import metrics as m
from headrace.web.access import MISDIRECTED, ReadAccess

if TYPE_CHECKING:
    from headrace.query.dynamodb import DynamoReader
    from headrace.sinks.dynamodb.config import DynamoDBConfig

log = logging.getLogger("headrace.ingest")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_json = msgspec.json.Encoder()
JSON_HEADERS = [(b"content-type", b"application/json")]
STREAM_ROUTE_PREFIX = "/v1/streams/"
STATUS_FRESH_SECONDS = 10.0


@dataclass(frozen=True)
class Route:
    """Where a path leads: a source, and its stream (``None``: taken from the path)."""

    source_id: str
    source: HttpSource
    stream: str | None
    limits: Limits

    @cached_property
    def header_names(self) -> frozenset[bytes]:
        """The request headers ingest reads for this route."""
        names = {b"content-encoding", b"content-type", b"content-length"}
        if self.source.id_header:
            names.add(self.source.id_header.lower().encode("latin-1"))
        return frozenset(names)


@dataclass(frozen=True)
class _PatternRoute:
    prefix: str
    suffix: str
    route: Route


class Router:
    """Paths to sources, built once from the pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.exact: dict[str, Route] = {}
        self.patterns: list[_PatternRoute] = []
        for source_id, source in pipeline.http_sources().items():
            limits = pipeline.limits_for(source)
            self.exact[f"{STREAM_ROUTE_PREFIX}{source_id}/events"] = Route(
                source_id, source, source_id, limits
            )
            if source.path and "{stream}" in source.path:
                prefix, suffix = source.path.rstrip("/").split("{stream}", 1)
                self.patterns.append(
                    _PatternRoute(prefix, suffix, Route(source_id, source, None, limits))
                )
            elif source.path:
                self.exact[source.path.rstrip("/") or "/"] = Route(
                    source_id, source, source_id, limits
                )

    def match(self, path: str) -> tuple[Route, str] | None:
        """The route of ``path`` and the stream it names, if any."""
        path = path.rstrip("/") or "/"
        route = self.exact.get(path)
        if route is not None:
            assert route.stream is not None
            return route, route.stream
        for pattern in self.patterns:
            if path.startswith(pattern.prefix) and path.endswith(pattern.suffix):
                stream = path[len(pattern.prefix) : len(path) - len(pattern.suffix)]
                if "/" not in stream and stream:
                    return pattern.route, stream
        return None


@dataclass(frozen=True)
class _SourceKeys:
    """Metric keys of one source, built once (the ingest path is hot)."""

    received: m.Key
    accepted: m.Key
    succeeded: m.Key

    @classmethod
    def of(cls, source_id: str, status: int) -> _SourceKeys:
        return cls(
            m.key("headrace_events_received_total", source=source_id),
            m.key("headrace_events_accepted_total", source=source_id),
            m.key("headrace_requests_total", source=source_id, status=str(status)),
        )


class IngestApp:
    """The ASGI application of one ingest worker."""

    def __init__(
        self,
        pipeline: Pipeline,
        data_dir: Path,
        *,
        writer_name: str = "w0",
        noop_endpoint: bool = False,
        workers: int = 1,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.pipeline = pipeline
        self.data_dir = data_dir
        self.router = Router(pipeline)
        self.noop_endpoint = noop_endpoint
        self.writer_name = writer_name
        self.run_dir = data_dir / "run"
        self.writer = open_buffer(pipeline.buffer, data_dir).writer(writer_name)
        self.metrics = m.Registry()
        sources = pipeline.http_sources().items()
        self._auth = {sid: SourceAuth(src, sid, data_dir) for sid, src in sources if src.auth}
        self._workers = workers
        self.read_access = ReadAccess(pipeline, listen_host=listen_host)
        self._dynamo_readers: dict[str, DynamoReader] = {}
        self._key_buckets: dict[int, TokenBucket] = {}
        self._buckets = {
            sid: TokenBucket.for_worker(src.rate_limit, workers)
            for sid, src in sources
            if src.rate_limit
        }
        self._cors = {sid: CorsPolicy(src.cors) for sid, src in sources if src.cors}
        self._schemas = {sid: SchemaCheck(src) for sid, src in sources if src.json_schema}
        self._mappers = {sid: Mapper(src.map, data_dir) for sid, src in sources if src.map}
        self.badrows = BadRowStore(data_dir)
        self._pending_writes: set[asyncio.Future[None]] = set()
        routes = [*self.router.exact.values(), *(p.route for p in self.router.patterns)]
        self._wanted_headers: dict[str, frozenset[bytes] | None] = {  # decoded headers, per source
            r.source_id: r.header_names
            | {b"origin"}
            | self._auth_headers(r.source_id)
            | (self._mappers[r.source_id].header_names if r.source_id in self._mappers else set())
            for r in routes
        }
        for source_id, auth in self._auth.items():
            if auth.wants_all_headers:
                self._wanted_headers[source_id] = None
        self._keys = {
            sid: _SourceKeys.of(sid, src.success_status)
            for sid, src in pipeline.http_sources().items()
        }
        from headrace.loads.api import LoadsApi
        from headrace.loads.webhook import bulk_endpoints

        self._loads = LoadsApi(data_dir, self.read_access)
        self._bulk = bulk_endpoints(pipeline, data_dir, self.metrics)
        self._metrics_task: asyncio.Task[None] | None = None
        self._started = False
        self.dashboard = Dashboard(
            pipeline, data_dir, self.read_access, (writer_name, self.metrics)
        )

    def _key_bucket(self, key_id: int, rate: float) -> TokenBucket:
        bucket = self._key_buckets.get(key_id)
        if bucket is None or bucket.rate != rate / self._workers:
            bucket = TokenBucket.for_worker(RateLimit(rate=rate), self._workers)
            self._key_buckets[key_id] = bucket
        return bucket

    def _auth_headers(self, source_id: str) -> frozenset[bytes]:
        auth = self._auth.get(source_id)
        return auth.header_names if auth is not None else frozenset()

    # -- lifecycle ---------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the buffer writer (recovering this writer's earlier segments)."""
        torn = self.writer.start()
        if torn:
            self.metrics.add(m.key("headrace_buffer_torn_tails_total"), torn)
        self._metrics_task = asyncio.create_task(self._publish_metrics())
        self._started = True

    async def shutdown(self) -> None:
        """Commit what is pending and seal the segment."""
        if self._metrics_task is not None:
            self._metrics_task.cancel()
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)
        if self._started:
            await self.writer.stop()
            self._refresh_gauges()
            with contextlib.suppress(OSError):
                m.write_snapshot(self.run_dir, self.writer_name, self.metrics)
            self._started = False

    async def _publish_metrics(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._refresh_gauges()
            with contextlib.suppress(OSError):
                m.write_snapshot(self.run_dir, self.writer_name, self.metrics)

    def _refresh_gauges(self) -> None:
        self.metrics.set(m.key("headrace_buffer_bytes"), self.writer.stored_bytes())
        self.metrics.set(
            m.key("headrace_buffer_commits_total", writer=self.writer_name), self.writer.commits
        )

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("ingest worker failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/" and method in ("GET", "HEAD"):  # the dashboard, even beside a source at /
            await self.dashboard(scope, receive, send)
            return
        if path.startswith("/v1/loads"):
            await self._loads(scope, receive, send)
            return
        bulk = self._bulk.get(path.rstrip("/") or "/")
        if bulk is not None:
            await bulk(scope, receive, send)
            return
        matched = self.router.match(path)
        if matched is not None:
            route, stream = matched
            if method == "POST":
                await self._ingest(scope, receive, send, route, stream)
            elif method == "OPTIONS" and route.source_id in self._cors:
                await self._preflight(scope, send, self._cors[route.source_id])
            elif method == "GET" and (
                path.startswith(STREAM_ROUTE_PREFIX) or route.source.read is not None
            ):
                if await self._may_read(scope, send):
                    await self._query(scope, send, route, stream)
            else:
                await _error(
                    send,
                    RequestRejected(405, "method_not_allowed", f"{method} is not allowed here"),
                )
        elif path == "/v1/badrows" and method == "GET":
            if await self._may_read(scope, send):
                await self._badrows(scope, send)
        elif path == "/openapi.json" and method == "GET":
            from headrace.ingest.openapi import openapi_document

            await _send(send, 200, _json.encode(openapi_document(self.pipeline)))
        elif path == "/healthz":
            await _send(send, 200, _json.encode({"status": "ok"}))
        elif path == "/readyz":
            await self._readyz(send)
        elif path == "/metrics":
            text = m.render(m.collect(self.run_dir, (self.writer_name, self.metrics)))
            await _send(send, 200, text.encode(), [(b"content-type", b"text/plain; version=0.0.4")])
        elif self.dashboard.handles(path):
            await self.dashboard(scope, receive, send)
        elif path == "/_noop" and self.noop_endpoint and method == "POST":
            await self._noop(receive, send)
        elif path.startswith(STREAM_ROUTE_PREFIX) and path.rstrip("/").endswith("/events"):
            await _error(
                send, RequestRejected(404, "unknown_stream", "no source takes this stream")
            )
        else:
            await _error(send, RequestRejected(404, "not_found", f"nothing at {path}"))

    async def _preflight(self, scope: Scope, send: Send, policy: CorsPolicy) -> None:
        wanted = {b"origin", b"access-control-request-method", b"access-control-request-headers"}
        headers = _headers(scope, frozenset(wanted))
        try:
            allowed = policy.preflight(
                headers.get("origin"),
                headers.get("access-control-request-method"),
                headers.get("access-control-request-headers"),
            )
        except RequestRejected as exc:
            await _error(send, exc)
            return
        await _send(send, 204, b"", allowed)

    async def _ingest(
        self, scope: Scope, receive: Receive, send: Send, route: Route, stream: str
    ) -> None:
        source_id = route.source_id
        cors: list[tuple[bytes, bytes]] = []
        kept_raw = b""  # what a bad row keeps: the body, decompressed once that has worked
        authorized = source_id not in self._auth  # bad rows only from senders that passed
        rejected: list[dict[str, Any]] = []
        try:
            if not NAME_PATTERN.match(stream):
                raise RequestRejected(
                    400,
                    "invalid_stream",
                    "stream names use letters, digits, '_', '.' and '-' (at most 128)",
                )
            headers = _headers(scope, self._wanted_headers[source_id])
            policy = self._cors.get(source_id)
            if policy is not None:
                cors = policy.response_headers(headers.get("origin"))
            raw = await _read_body(receive, headers, route.limits.max_body_bytes)
            kept_raw = raw
            received_at_us = time.time_ns() // 1000
            auth = self._auth.get(source_id)
            principal = None
            if auth is not None:
                client = scope.get("client")
                facts = RequestFacts(
                    headers, raw, client[0] if client else None, scope.get("query_string", b"")
                )
                principal = auth.verify(facts, received_at_us / 1_000_000, "POST", scope["path"])
                key = principal.api_key if principal is not None else None
                if key is not None and key.rate:
                    self._key_bucket(key.id, key.rate).take()
            authorized = True
            # Rate limits count authorized requests only: refused ones must not starve senders.
            bucket = self._buckets.get(source_id)
            if bucket is not None:
                bucket.take()
            body = decompress(raw, headers.get("content-encoding"), route.limits)
            kept_raw = body
            schema = self._schemas.get(source_id)
            # with a simple schema, a body that surely fits needs no values built at all: its
            # fast form checks it while skimming; anything else is decoded and fully checked
            mapper = self._mappers.get(source_id)
            needs_values = route.source.id_field is not None or mapper is not None
            fast = schema.fast if schema is not None and not needs_values else None
            decoded = parse_events(
                body,
                declared_format=route.source.format,
                content_type=headers.get("content-type"),
                limits=route.limits,
                need_values=needs_values or (schema is not None and fast is None),
                skimmer=fast,
            )
            keys = self._keys[source_id]
            self.metrics.add(keys.received, decoded.count)
            if schema is not None and decoded.events is not None:
                decoded, rejected = self._validate(route, stream, decoded, schema, received_at_us)
            count = decoded.count
            base = new_base_id(received_at_us // 1000)
            # a delivery id is trusted only when the signature that covers it was checked
            id_header = route.source.id_header or (
                principal.delivery_id_header if principal else None
            )
            # id_field names a field of the event as sent, before any map
            ids = _explicit_ids(route.source, id_header, headers, decoded.events or [], count, base)
            if mapper is not None and decoded.events:
                client = scope.get("client")
                meta = RequestMeta(
                    stream, source_id, client[0] if client else None,
                    principal.name if principal else None, received_at_us, headers,
                    principal.context if principal else {},
                )  # fmt: skip
                try:
                    mapped = [mapper.apply(event, meta) for event in decoded.events]
                    body_out = _json.encode(mapped)
                except (TypeError, ValueError, msgspec.EncodeError) as exc:
                    raise RequestRejected(
                        400, "mapping_error", f"the map cannot be applied: {exc}"
                    ) from exc
                decoded = Decoded(FORMAT_ARRAY, len(mapped), body_out, mapped)
            if count:
                request = BufferedRequest(
                    received_at_us,
                    base.to_bytes(16, "big"),
                    stream,
                    source_id,
                    count,
                    decoded.fmt,
                    decoded.body,
                    ids,
                )
                await self.writer.commit(request)
        except RequestRejected as exc:
            self.metrics.add(
                m.key("headrace_requests_rejected_total", source=source_id, reason=exc.reason)
            )
            kind = REASONS.get(exc.reason)
            if kind is not None and authorized:  # auth, rate and routing refusals are not
                errors: Any = exc.detail.get("errors") or [{}]
                path = str(errors[0].get("path", ""))
                self._keep_bad_rows(
                    [(source_id, stream, kind, path, exc.message, time.time_ns() // 1000, kept_raw)]
                )
            self._count_request(source_id, exc.status)
            await _error(send, exc, cors)
            return
        except BufferFull as exc:
            self.metrics.add(
                m.key("headrace_requests_rejected_total", source=source_id, reason="buffer_full")
            )
            self._count_request(source_id, 503)
            reply = {"error": "buffer_full", "message": str(exc)}
            extra = [(b"retry-after", str(exc.retry_after).encode())]
            await _send(send, 503, _json.encode(reply), JSON_HEADERS + extra + cors)
            return
        except Exception:
            log.exception("ingest into %s failed unexpectedly; nothing was stored", source_id)
            self._count_request(source_id, 500)
            await _error(
                send,
                RequestRejected(500, "internal_error", "the request failed; nothing was stored"),
            )
            return
        self.metrics.add(keys.accepted, count)
        self.metrics.add(keys.succeeded)
        if route.source.success_body is not None:
            await _send(
                send,
                route.source.success_status,
                route.source.success_body.encode(),
                [(b"content-type", b"text/plain; charset=utf-8"), *cors],
            )
            return
        accepted: dict[str, Any] = {
            "accepted": count,
            "ids": ids if ids is not None else event_ids(base, count),
        }
        if rejected:
            accepted["rejected"] = rejected
        await _send(send, route.source.success_status, _json.encode(accepted), JSON_HEADERS + cors)

    def _validate(
        self, route: Route, stream: str, decoded: Decoded, schema: SchemaCheck, received_at_us: int
    ) -> tuple[Decoded, list[dict[str, Any]]]:
        """Check every event; refuse the request or keep only the valid events, per the source."""
        assert decoded.events is not None
        kept: list[dict[str, Any]] = []
        violations: list[Violation] = []
        invalid: dict[int, list[Violation]] = {}
        changed = False
        for index, event in enumerate(decoded.events):
            stored, problems = schema.check(index, event)
            if problems:
                invalid[index] = problems
                violations += problems
            else:
                kept.append(stored)
                changed |= stored is not event
        if invalid and route.source.on_invalid == "reject_request":
            raise RequestRejected(
                400, "schema_violation",
                f"{len(invalid)} of {decoded.count} event(s) do not match the schema",
                errors=[v.as_dict() for v in violations[:50]],
            )  # fmt: skip
        if invalid:
            self._keep_bad_rows([
                (route.source_id, stream, "schema_violation", problems[0].path,
                 "; ".join(f"{p.path}: {p.message}" for p in problems)[:2000], received_at_us,
                 _json.encode(decoded.events[index]))
                for index, problems in invalid.items()
            ])  # fmt: skip
        if invalid or changed:
            body = _json.encode(kept)
            decoded = Decoded(FORMAT_ARRAY, len(kept), body, kept)
        return decoded, [v.as_dict() for v in violations[:50]]

    def _keep_bad_rows(self, rows: list[tuple[str, str, str, str, str, int, bytes]]) -> None:
        """Store refusals from a thread; the answer does not wait for SQLite."""
        future = asyncio.get_running_loop().run_in_executor(None, self.badrows.add, rows)
        self._pending_writes.add(future)
        future.add_done_callback(self._bad_rows_written)

    def _bad_rows_written(self, future: asyncio.Future[None]) -> None:
        self._pending_writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("cannot keep bad rows: %s", future.exception())

    def _count_request(self, source_id: str, status: int) -> None:
        self.metrics.add(m.key("headrace_requests_total", source=source_id, status=str(status)))

    async def _noop(self, receive: Receive, send: Send) -> None:
        """Reads the body and answers like a successful ingest: the benchmark's ceiling."""
        while True:
            message = await receive()
            if not message.get("more_body"):
                break
        await _send(send, 202, b'{"accepted":0,"ids":[]}')

    async def _query(self, scope: Scope, send: Send, route: Route, stream: str) -> None:
        from headrace.query.lake import QueryError
        from headrace.query.targets import lake_for_source, read_sink_for
        from headrace.sinks.dynamodb.config import DynamoDBConfig

        bounded = route.source.read is not None and not path_is_stream_api(scope["path"])
        # the source's own path reads its read.sink; the stream API always reads the lake
        found = (
            read_sink_for(self.pipeline, route.source_id)
            if bounded
            else lake_for_source(self.pipeline, route.source_id)
        )
        if found is None:
            await _error(
                send, RequestRejected(404, "not_queryable", "no lake sink stores this stream")
            )
            return
        sink_id, sink = found
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            if bounded:
                from headrace.query.source_read import bounded_params

                assert route.source.read is not None
                params = bounded_params(params, route.source.read)
            if isinstance(sink, DynamoDBConfig):
                from headrace.query.dynamodb import ReadUnavailable

                try:
                    reader = self._dynamo_reader(sink_id, sink)
                    result = await asyncio.to_thread(reader.query, stream, params)
                except ReadUnavailable as exc:
                    log.warning("GET %s: %s", scope["path"], exc)
                    await _error(send, RequestRejected(503, "read_unavailable", str(exc)))
                    return
            else:
                result = await asyncio.to_thread(
                    self._read_lake, sink_id, sink, stream, params, bounded
                )
        except QueryError as exc:
            await _error(send, RequestRejected(exc.status, exc.reason, str(exc)))
            return
        await _send(send, 200, _json.encode(result))

    def _read_lake(
        self, sink_id: str, sink: LakeConfig, stream: str, params: list[tuple[str, str]],
        bounded: bool,
    ) -> dict[str, Any]:  # fmt: skip
        """A page of the stream's events; a stream the lake has never stored (and the pipeline
        does not name) is a 404 ``unknown_stream``, not an empty page. A source's own path
        names its stream, so a bounded read never needs the check."""
        from headrace.query.lake import query_events
        from headrace.query.streams import require_known

        if not bounded:
            require_known(self.pipeline, self.data_dir, sink_id, sink, stream)
        return query_events(self.data_dir, sink_id, sink, stream, params)

    def _dynamo_reader(self, sink_id: str, sink: DynamoDBConfig) -> DynamoReader:
        """The reader of a dynamodb sink, made once per worker (it holds a boto3 client)."""
        from headrace.query.dynamodb import DynamoReader

        reader = self._dynamo_readers.get(sink_id)
        if reader is None:
            reader = self._dynamo_readers[sink_id] = DynamoReader(sink)
        return reader

    async def _may_read(self, scope: Scope, send: Send) -> bool:
        """Whether the reader holds a read credential (when one is needed); else answer 401."""
        access = self.read_access
        if access.misdirected(_headers(scope, frozenset({b"host"})).get("host")):
            await _error(send, RequestRejected(403, "misdirected_host", MISDIRECTED))
            return False
        if access.open:
            return True
        given = _headers(scope, frozenset({access.header_bytes})).get(access.header)
        if access.allows(given):
            return True
        await _error(send, RequestRejected(401, "unauthorized_read", "reading needs a read token"))
        return False

    async def _badrows(self, scope: Scope, send: Send) -> None:
        """``GET /v1/badrows?source=&reason=&after=&limit=``: kept refusals, oldest first."""
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        limit_text, after_text = params.get("limit", "100"), params.get("after", "0")
        if not (
            _whole(limit_text) and _whole(after_text) and len(limit_text) <= 4 and len(after_text) <= 18
            and 1 <= int(limit_text) <= 1000
        ):  # fmt: skip
            await _error(
                send,
                RequestRejected(
                    400, "invalid_parameter", "limit is 1 to 1000; after is a whole number"
                ),
            )
            return
        limit, after = int(limit_text), int(after_text)
        rows = await asyncio.to_thread(
            self.badrows.find, source=params.get("source"), reason=params.get("reason"),
            include_replayed=params.get("replayed") == "true", after_id=after, limit=limit,
        )  # fmt: skip
        body = {
            "bad_rows": [r.as_dict() for r in rows],
            "next_after": rows[-1].id if len(rows) == limit else None,
        }
        await _send(send, 200, _json.encode(body))

    async def _readyz(self, send: Send) -> None:
        problems: dict[str, str] = {}
        buffer_problem = self.writer.problem()
        if buffer_problem:
            problems["buffer"] = buffer_problem
        status = read_delivery_status(self.run_dir)
        if status is None:
            problems["delivery"] = "the delivery process is not running"
        else:
            for sink_id, reason in status.get("unhealthy", {}).items():
                problems[f"sinks.{sink_id}"] = reason
        if problems:
            await _send(send, 503, _json.encode({"status": "not_ready", "problems": problems}))
        else:
            await _send(send, 200, _json.encode({"status": "ready"}))


def read_delivery_status(run_dir: Path) -> dict[str, Any] | None:
    """The delivery process's latest status, if it is fresh."""
    try:
        raw = (run_dir / "delivery.json").read_bytes()
        status: dict[str, Any] = msgspec.json.decode(raw)
    except (OSError, msgspec.DecodeError):
        return None
    if time.time() - float(status.get("updated_at", 0)) > STATUS_FRESH_SECONDS:
        return None
    return status


def path_is_stream_api(path: str) -> bool:
    """Whether ``path`` is under ``/v1/streams/`` (the unbounded-by-default events API)."""
    return path.startswith(STREAM_ROUTE_PREFIX)


def _explicit_ids(
    source: HttpSource,
    id_header: str | None,
    headers: dict[str, str],
    events: list[dict[str, Any]],
    count: int,
    base: int,
) -> list[str] | None:
    if id_header:
        value = headers.get(id_header.lower())
        if value:
            return [value] if count == 1 else [f"{value}:{i}" for i in range(count)]
    if source.id_field:
        field_name = source.id_field
        generated: list[str] | None = None
        ids = []
        for index, event in enumerate(events):
            value = event.get(field_name)
            if value is None or isinstance(value, dict | list):
                generated = generated or event_ids(base, len(events))
                ids.append(generated[index])
            else:
                ids.append(str(value))
        return ids
    return None


def _whole(text: str) -> bool:
    """A whole number in ASCII digits ("¹" is a digit to ``str.isdigit``, not to ``int``)."""
    return text.isascii() and text.isdigit()


def _headers(scope: Scope, wanted: frozenset[bytes] | None) -> dict[str, str]:
    # ASGI servers give header names in lower case; only the few ingest reads are decoded
    # (all of them for a python authorizer, which may look at any).
    return {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in scope["headers"]
        if wanted is None or k in wanted
    }


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and _whole(declared) and int(declared) > limit:
        raise RequestRejected(
            413, "body_too_large", f"the body is larger than {limit} bytes", limit=limit
        )
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestRejected(400, "client_disconnected", "the client went away mid-request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestRejected(
                413, "body_too_large", f"the body is larger than {limit} bytes", limit=limit
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    # A Content-Length spares the server chunked encoding.
    length = (b"content-length", str(len(body)).encode())
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*(headers if headers is not None else JSON_HEADERS), length],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _error(
    send: Send, exc: RequestRejected, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = {"error": exc.reason, "message": exc.message, **exc.detail}
    headers = JSON_HEADERS + (extra or [])
    retry_after = exc.detail.get("retry_after")
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await _send(send, exc.status, _json.encode(body), headers)
