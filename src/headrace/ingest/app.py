"""The ingest routes of a worker and their lifespan (a raw ASGI app; routes are built once).

    POST    /v1/streams/{stream}/events  ingest into a source (``pipeline``; any stream on the
                                         default pipeline)
    POST    <source path>                ingest into a configured http source (``pipeline``)
    OPTIONS <source path>                a CORS preflight, for a source with ``cors:``
    GET     /v1/streams/{stream}/events  read stored events (``reads``)
    GET     <source path>                read a source with ``read:`` set (``reads``)
    GET     /v1/badrows                  kept refusals (``web.failures``)
    GET     /openapi.json                the pipeline's sources as an OpenAPI document
    GET     /healthz  /readyz  /metrics  liveness, readiness, Prometheus metrics (``health``)
    POST    /_noop                       with ``--noop-endpoint``: the benchmark's ceiling
    POST    /_decoded/<ingest path>      with ``--noop-endpoint``: a source's whole request path
                                         but the commit (nothing stored), the second ceiling

``headrace.server.app`` serves these beside the bulk-load endpoints and the dashboard. The
lifespan opens this worker's buffer writer (recovering its earlier segments) and publishes its
metrics every second; at shutdown it waits for bad rows being kept, then commits what is
pending and seals the segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from headrace.buffer import open_buffer
from headrace.buffer.base import BufferWriter
from headrace.config.models import Pipeline
from headrace.errors import RequestRejected
from headrace.ingest import health
from headrace.ingest.badrows import BadRowKeeper
from headrace.ingest.pipeline import DiscardingWriter, SourcePipeline, noop
from headrace.ingest.reads import EventReads
from headrace.ingest.routes import Router, path_is_stream_api
from headrace.storage.badrows import BadRowStore
from headrace.storage.failures import BAD_ROWS
from headrace.telemetry import metrics as m
from headrace.web.access import ReadAccess, read_headers
from headrace.web.asgi import Receive, Scope, Send, send_error, send_json
from headrace.web.failures import FailuresApi

log = logging.getLogger("headrace.ingest")
DECODED_PREFIX = "/_decoded/"


def not_found(path: str) -> RequestRejected:
    """The refusal of a path nothing serves."""
    return RequestRejected(404, "not_found", f"nothing at {path}")


class IngestApp:
    """The ingest routes of one worker, and its buffer writer and metrics."""

    def __init__(
        self,
        pipeline: Pipeline,
        data_dir: Path,
        *,
        access: ReadAccess | None = None,
        writer_name: str = "w0",
        noop_endpoint: bool = False,
        workers: int = 1,
        delivery_here: bool = True,
    ) -> None:
        self.pipeline = pipeline
        self.data_dir = data_dir
        self.noop_endpoint = noop_endpoint
        self.writer_name = writer_name
        self.run_dir = data_dir / "run"
        self.writer = open_buffer(pipeline.buffer, data_dir).writer(writer_name)
        self.metrics = m.Registry()
        self.badrows = BadRowStore(data_dir)
        self.keeper = BadRowKeeper(self.badrows)
        access = access if access is not None else ReadAccess(pipeline)
        self.router = Router(pipeline)
        self.sources = self._source_pipelines(self.writer, self.metrics, workers)
        # the ceiling without the commit: its own counters, so nothing it sees is reported
        self.decoded = (
            self._source_pipelines(DiscardingWriter(), m.Registry(), workers)
            if noop_endpoint
            else {}
        )
        self.access = access
        self.reads = EventReads(pipeline, data_dir, access)
        self.badrows_api = FailuresApi(BAD_ROWS, data_dir, access)
        self.health = health.Health(
            self.writer, self.run_dir, (writer_name, self.metrics), delivery_here, access=access
        )
        self._metrics_task: asyncio.Task[None] | None = None
        self._started = False

    def _source_pipelines(
        self, writer: BufferWriter, metrics: m.Registry, workers: int
    ) -> dict[str, SourcePipeline]:
        return {
            sid: SourcePipeline(
                sid,
                source,
                self.pipeline.limits_for(source),
                writer=writer,
                metrics=metrics,
                keeper=self.keeper,
                data_dir=self.data_dir,
                workers=workers,
            )
            for sid, source in self.pipeline.http_sources().items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if not await self.route(scope, receive, send):
                await send_error(send, not_found(scope["path"]))
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    # -- the route table ---------------------------------------------------------------------

    async def route(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer an http request on an ingest route; ``False``, with nothing sent, for a path
        ingest does not serve."""
        path: str = scope["path"]
        method: str = scope["method"]
        matched = self.router.match(path)
        if matched is not None:
            route, stream = matched
            source = self.sources[route.source_id]
            if method == "POST":
                await source(scope, receive, send, stream)
            elif method == "OPTIONS" and source.cors is not None:
                await source.preflight(scope, send)
            elif method == "GET" and self.reads.readable(route, path):
                await self.reads(scope, send, route, stream)
            else:
                await send_error(
                    send,
                    RequestRejected(405, "method_not_allowed", f"{method} is not allowed here"),
                )
        elif path == "/v1/badrows" and method == "GET":
            await self.badrows_api(scope, send)
        elif path == "/openapi.json" and method == "GET":
            from headrace.ingest.openapi import openapi_document

            # it names every source: no more to a rebinding page than the other reads
            refusal = self.access.host_refusal(read_headers(self.access, scope)[0])
            if refusal is not None:
                await send_error(send, refusal)
            else:
                await send_json(send, openapi_document(self.pipeline))
        elif path in health.PATHS:
            await self.health(scope, send)
        elif path == "/_noop" and self.noop_endpoint and method == "POST":
            await noop(receive, send)
        elif path.startswith(DECODED_PREFIX) and self.decoded and method == "POST":
            decoded = self.router.match(path[len(DECODED_PREFIX) - 1 :])
            if decoded is None:
                return False
            route, stream = decoded
            await self.decoded[route.source_id](scope, receive, send, stream)
        elif path_is_stream_api(path) and path.rstrip("/").endswith("/events"):
            await send_error(
                send, RequestRejected(404, "unknown_stream", "no source takes this stream")
            )
        else:
            return False
        return True

    # -- the lifespan ------------------------------------------------------------------------

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol: ``startup`` and ``shutdown``."""
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
        await self.keeper.drain()
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
