"""The embedded buffer (``buffer: {type: local}``, the default): checksummed segment files under
``<data>/buffer/``, group-committed fsyncs, one writer per ingest worker, positions per sink in
the state database. Everything about segments, frames and offsets stays in this package; the
rest of headrace sees ``LocalBuffer`` as a ``headrace.buffer.Buffer``.

    frames      the on-disk record format
    segments    appending, sealing, recovery of segments whose writer died, listing
    writer      an ingest worker's group-committed appends (``BufferWriter``)
    reader      a sink's reads and acknowledgements (``BufferReader``)
    positions   the ``positions`` table
    retention   removing what every sink has taken
    replay      sending a time range (or given requests) through delivery again
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.local.replay import append_requests, replay_range
from headrace.buffer.local.retention import remove_expired_segments
from headrace.buffer.local.segments import SegmentWriter, recover_dead_writers
from headrace.buffer.local.writer import CapacityGuard, LocalWriter
from headrace.buffer.records import BufferedRequest
from headrace.config.buffers import LocalBuffer as LocalBufferSettings

log = logging.getLogger("headrace.buffer")


class LocalBuffer:
    """The segment-file buffer in ``<data dir>/buffer`` (see the package docstring)."""

    def __init__(self, settings: LocalBufferSettings, data_dir: Path) -> None:
        self.settings = settings
        self.directory = data_dir / "buffer"

    def writer(self, name: str) -> LocalWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = self.settings
        segments = SegmentWriter(
            self.directory, name,
            segment_bytes=settings.segment_bytes, segment_age=settings.segment_age,
        )  # fmt: skip
        guard = CapacityGuard(
            self.directory, max_bytes=settings.max_bytes, min_free_bytes=settings.min_free_bytes
        )
        return LocalWriter(segments, guard)

    def reader(self, sink: str, conn: sqlite3.Connection, sources: list[str]) -> SegmentReader:
        return SegmentReader.for_sink(self.directory, sink, conn)

    def recover(self) -> int:
        torn = 0
        for recovery in recover_dead_writers(self.directory):
            torn += recovery.torn_bytes > 0
        return torn

    def expire(self, conn: sqlite3.Connection, sinks: list[str]) -> int:
        removed = remove_expired_segments(
            self.directory, conn, sinks, self.settings.retention, self.settings.max_bytes
        )
        if removed:
            log.info("retention removed %d delivered segment(s)", len(removed))
        return len(removed)

    def replay(
        self,
        stream: str,
        since_us: int,
        until_us: int,
        sinks: list[str] | None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        return replay_range(
            self.directory, stream=stream, since_us=since_us, until_us=until_us, sinks=sinks,
            progress=progress,
        )  # fmt: skip

    def requeue(self, requests: Iterable[BufferedRequest]) -> int:
        return append_requests(self.directory, requests)

    def delivery_state(self, sinks: list[str]) -> dict[str, Any] | None:
        """None: delivery state lives in this data directory (the dashboard reads its metrics)."""
        return None

    def close(self) -> None:
        """Nothing to release: files are opened by the readers and writers that use them."""


__all__ = ["LocalBuffer"]
