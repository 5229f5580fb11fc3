"""Whether one ingest worker is alive and ready, and its metrics:

GET /healthz   200 ``{"status": "ok"}`` while the worker answers
GET /readyz    200 when its buffer writer takes commits and (when this machine delivers too,
               as under ``headrace serve``) the delivery process runs with every sink
               healthy; else 503 listing each problem
GET /metrics   Prometheus text: this worker's counters with the snapshots the other
               processes of the server publish in ``<data>/run``

Who sees what (``probe_access``; ``server.delivery_http`` asks the same for ``headrace
deliver``'s port). While reads are open (no credential configured, loopback only), all three
answer only a loopback ``Host`` (403 ``misdirected_host``): a page on ``attacker.example``
resolving to 127.0.0.1 must not read ``/metrics``, which names every source and sink, nor
``/readyz``'s problems. With credentials configured any ``Host`` may ask, and ``/metrics`` needs
a read credential (401 ``unauthorized_read``; a scraper sends ``Authorization: Bearer <read
token>``). The probes never need one, since load balancers and orchestrators send none:
``/healthz`` says only that the process answers, and ``/readyz`` without a credential answers
its status code and ``status`` but not the ``problems``, whose text names sinks and their
errors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from headrace.buffer.base import BufferWriter
from headrace.errors import RequestRejected
from headrace.telemetry import metrics as m
from headrace.web.access import UNAUTHORIZED_READ, ReadAccess, read_headers
from headrace.web.asgi import Scope, Send, encode_json, send_body, send_error

PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
STATUS_FRESH_SECONDS = 10.0
PROMETHEUS_HEADERS = [(b"content-type", b"text/plain; version=0.0.4")]


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


def probe_access(
    access: ReadAccess, path: str, host: str | None, credential: str | None
) -> RequestRejected | bool:
    """Whether a request for ``path`` (one of ``PATHS``) with this ``Host`` and read-credential
    header value is refused (the refusal), or answered with its detail (``True``: ``/readyz``'s
    problems) or without (``False``)."""
    refusal = access.host_refusal(host)
    if refusal is not None:
        return refusal
    if access.allows(credential):
        return True
    return UNAUTHORIZED_READ if path == "/metrics" else False


def readiness(problems: dict[str, str], detail: bool) -> tuple[int, bytes]:
    """The status and body of ``/readyz``; the problems are listed only with ``detail``."""
    if not problems:
        return 200, encode_json({"status": "ready"})
    doc: dict[str, Any] = {"status": "not_ready"}
    if detail:
        doc["problems"] = problems
    return 503, encode_json(doc)


class Health:
    """The health endpoints of one ingest worker (any method)."""

    def __init__(
        self, writer: BufferWriter, run_dir: Path, own: tuple[str, m.Registry],
        delivery_here: bool = True, *, access: ReadAccess,
    ) -> None:  # fmt: skip
        self.writer = writer
        self.run_dir = run_dir
        self.own = own  # this worker's name and live counters (its snapshot may be a second old)
        self.delivery_here = delivery_here  # false under ``headrace ingest``: others deliver
        self.access = access

    async def __call__(self, scope: Scope, send: Send) -> None:
        """Answer the request for one of ``PATHS``."""
        path: str = scope["path"]
        verdict = probe_access(self.access, path, *read_headers(self.access, scope))
        if isinstance(verdict, RequestRejected):
            await send_error(send, verdict)
        elif path == "/healthz":
            await send_body(send, 200, encode_json({"status": "ok"}))
        elif path == "/readyz":
            await send_body(send, *readiness(self.problems(), verdict))
        else:
            text = m.render(m.collect(self.run_dir, self.own))
            await send_body(send, 200, text.encode(), PROMETHEUS_HEADERS)

    def problems(self) -> dict[str, str]:
        """Why the worker is not ready (``buffer``, ``delivery``, ``sinks.<id>``); empty if it is."""
        problems: dict[str, str] = {}
        buffer_problem = self.writer.problem()
        if buffer_problem:
            problems["buffer"] = buffer_problem
        if self.delivery_here:
            problems.update(delivery_problems(self.run_dir))
        return problems


def delivery_problems(run_dir: Path) -> dict[str, str]:
    """Why this machine's delivery is not ready (``delivery``, ``sinks.<id>``); empty if it is."""
    status = read_delivery_status(run_dir)
    if status is None:
        return {"delivery": "the delivery process is not running"}
    return {f"sinks.{sink_id}": reason for sink_id, reason in status.get("unhealthy", {}).items()}
