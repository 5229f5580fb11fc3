"""The health and metrics port of a machine that only delivers (``headrace deliver``):

    GET /healthz   200 ``{"status": "ok"}`` while the supervisor runs
    GET /readyz    200 when the delivery process runs with every sink healthy; else 503 with
                   each problem (``delivery``, ``sinks.<id>``)
    GET /metrics   Prometheus text: what this machine's processes publish in ``<data>/run``

A small threaded HTTP server in the supervisor: it reads the files the delivery process writes,
so it answers even while that process is being restarted. Anything else is a 404. Who sees
what is decided as on an ingest worker (``ingest.health.probe_access``): the Host check against
DNS rebinding on all three, a read credential for ``/metrics`` when any is configured.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from headrace.config.models import ApiSettings
from headrace.errors import RequestRejected
from headrace.ingest.health import delivery_problems, probe_access, readiness
from headrace.telemetry import metrics as m
from headrace.web.access import ReadAccess
from headrace.web.asgi import encode_json

log = logging.getLogger("headrace.serve")


class DeliveryStatusServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` of this machine's delivery."""

    def __init__(
        self, run_dir: Path, address: tuple[str, int], access: ReadAccess | None = None
    ) -> None:
        self.run_dir = run_dir
        # the pipeline's read credentials; without them only HEADRACE_ADMIN_TOKEN counts
        access = access or ReadAccess(ApiSettings(), listen_host=address[0])
        handler = type("Handler", (_Handler,), {"run_dir": run_dir, "access": access})
        self.server = ThreadingHTTPServer(address, handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address[:2]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="delivery-status", daemon=True
        )

    def start(self) -> DeliveryStatusServer:
        self._thread.start()
        log.info("delivery health and metrics on http://%s:%d", *self.address)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    run_dir: Path
    access: ReadAccess
    server_version = "headrace"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        verdict: RequestRejected | bool = False
        if path in ("/healthz", "/readyz", "/metrics"):
            verdict = probe_access(
                self.access, path, self.headers.get("host"), self.headers.get(self.access.header)
            )
        if isinstance(verdict, RequestRejected):
            body = {"error": verdict.reason, "message": verdict.message}
            self._send(verdict.status, "application/json", encode_json(body))
        elif path == "/healthz":
            self._send(200, "application/json", encode_json({"status": "ok"}))
        elif path == "/readyz":
            status, doc = readiness(delivery_problems(self.run_dir), verdict)
            self._send(status, "application/json", doc)
        elif path == "/metrics":
            text = m.render(m.collect(self.run_dir)).encode()
            self._send(200, "text/plain; version=0.0.4", text)
        else:
            body = {"error": "not_found", "message": f"nothing at {path}"}
            self._send(404, "application/json", encode_json(body))

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (a scraper asks every few seconds)."""
