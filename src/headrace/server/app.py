"""One ingest worker's ASGI app: the ingest routes, the bulk-load endpoints and the dashboard,
composed. The first of these that takes a request answers it:

    GET|HEAD /              the dashboard (even beside a source at ``/``)
    /v1/loads[/...]         the load-job history and its operations (``loads.api``)
    <bulk_export path>      a table-export webhook (``loads.webhook``)
    the ingest routes       sources, reads, bad rows, health and metrics (``ingest.app``)
    the dashboard's paths   its pages, JSON endpoints and the browser tracker (``dashboard``)
    anything else           404 ``not_found``

They share the read credentials (``web.access.ReadAccess``) and this worker's metrics; the
lifespan (buffer writer, metrics publishing) is ingest's.
"""

from __future__ import annotations

from pathlib import Path

from headrace.config.models import Pipeline
from headrace.dashboard.routes import Dashboard
from headrace.ingest.app import IngestApp, not_found
from headrace.loads.api import LoadsApi
from headrace.loads.webhook import bulk_endpoints
from headrace.web.access import ReadAccess
from headrace.web.asgi import Receive, Scope, Send, send_error


class WorkerApp:
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
        delivery_here: bool = True,
    ) -> None:
        self.pipeline = pipeline
        self.read_access = ReadAccess(pipeline, listen_host=listen_host)
        self.ingest = IngestApp(
            pipeline, data_dir, access=self.read_access, writer_name=writer_name,
            noop_endpoint=noop_endpoint, workers=workers, delivery_here=delivery_here,
        )  # fmt: skip
        self.loads = LoadsApi(data_dir, self.read_access)
        self.bulk = bulk_endpoints(pipeline, data_dir, self.ingest.metrics)
        self.dashboard = Dashboard(
            pipeline, data_dir, self.read_access, (writer_name, self.ingest.metrics)
        )

    async def startup(self) -> None:
        """Start the worker (ingest's buffer writer and metrics)."""
        await self.ingest.startup()

    async def shutdown(self) -> None:
        """Stop the worker: what is pending is committed, the segment sealed."""
        await self.ingest.shutdown()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.ingest(scope, receive, send)  # the lifespan
            return
        path: str = scope["path"]
        if path == "/" and scope["method"] in ("GET", "HEAD"):
            await self.dashboard(scope, receive, send)
        elif path.startswith("/v1/loads"):
            await self.loads(scope, receive, send)
        elif self.bulk and (bulk := self.bulk.get(path.rstrip("/") or "/")) is not None:
            await bulk(scope, receive, send)
        elif await self.ingest.route(scope, receive, send):
            return
        elif self.dashboard.handles(path):
            await self.dashboard(scope, receive, send)
        else:
            await send_error(send, not_found(path))
