"""The local buffer as tests fill and read it: requests written as ingest would, everything
stored read back, and checkpoints that acknowledge given segment positions."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from headrace.buffer.local import LocalBuffer
from headrace.buffer.local.positions import POSITIONS_SCHEMA
from headrace.buffer.local.reader import PositionAck, SegmentReader
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest
from headrace.config.buffers import LocalBuffer as LocalBufferSettings
from headrace.ids import new_base_id
from headrace.storage import state


def request(events: list[dict[str, object]], *, stream: str = "s", source: str = "src",
            received_at_us: int | None = None) -> BufferedRequest:  # fmt: skip
    """One accepted request holding ``events`` (a JSON array), with generated ids."""
    return BufferedRequest(
        time.time_ns() // 1000 if received_at_us is None else received_at_us,
        new_base_id().to_bytes(16, "big"),
        stream,
        source,
        len(events),
        FORMAT_ARRAY,
        msgspec.json.encode(events),
    )


def local_buffer(data_dir: Path) -> LocalBuffer:
    """The local buffer of ``data_dir``, with default settings."""
    return LocalBuffer(LocalBufferSettings(), data_dir)


def fill(data_dir: Path, requests: Iterable[BufferedRequest]) -> int:
    """Store ``requests`` in ``data_dir``'s buffer (durably, sealed); returns the events."""
    return LocalBuffer(LocalBufferSettings(), data_dir).requeue(requests)


def stored(data_dir: Path) -> list[BufferedRequest]:
    """Every request in ``data_dir``'s buffer, oldest first."""
    reader = SegmentReader(data_dir / "buffer", "test", {}, set())
    items = []
    while polled := reader.poll(1 << 30).items:
        items.extend(polled)
    return [item.request for item in items]


def checkpoint(sink: str, positions: dict[str, int] | None = None, *,
               finished: set[str] | None = None, **kw: object) -> state.Checkpoint:  # fmt: skip
    """A checkpoint acknowledging ``positions`` (segment: offset) for ``sink`` (its positions
    table is made when the checkpoint is applied, as a reader would have made it)."""
    return state.Checkpoint(sink, _Ack(sink, positions or {}, finished), **kw)  # type: ignore[arg-type]


class _Ack(PositionAck):
    def record(self, conn: sqlite3.Connection) -> None:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'positions'"
        ).fetchone()
        if not exists:  # within the caller's transaction: CREATE, not executescript
            conn.execute(POSITIONS_SCHEMA.strip().rstrip(";"))
        super().record(conn)


__all__ = ["checkpoint", "fill", "local_buffer", "request", "stored"]
