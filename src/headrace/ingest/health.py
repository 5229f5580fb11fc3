"""Whether one ingest worker is alive and ready, and its metrics:

GET /healthz   200 ``{"status": "ok"}`` while the worker answers
GET /readyz    200 when its buffer writer takes commits and (when this machine delivers too,
               as under ``headrace serve``) the delivery process runs with every sink
               healthy; else 503 listing each problem
GET /metrics   Prometheus text: this worker's counters with the snapshots the other
               processes of the server publish in ``<data>/run``
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from headrace.buffer.base import BufferWriter
from headrace.telemetry import metrics as m
from headrace.web.asgi import Send, encode_json, send_body

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


class Health:
    """The health endpoints of one ingest worker (any method)."""

    def __init__(
        self, writer: BufferWriter, run_dir: Path, own: tuple[str, m.Registry],
        delivery_here: bool = True,
    ) -> None:  # fmt: skip
        self.writer = writer
        self.run_dir = run_dir
        self.own = own  # this worker's name and live counters (its snapshot may be a second old)
        self.delivery_here = delivery_here  # false under ``headrace ingest``: others deliver

    async def __call__(self, path: str, send: Send) -> None:
        """Answer ``path``, one of ``PATHS``."""
        if path == "/healthz":
            await send_body(send, 200, encode_json({"status": "ok"}))
        elif path == "/readyz":
            problems = self.problems()
            if problems:
                body = encode_json({"status": "not_ready", "problems": problems})
                await send_body(send, 503, body)
            else:
                await send_body(send, 200, encode_json({"status": "ready"}))
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
