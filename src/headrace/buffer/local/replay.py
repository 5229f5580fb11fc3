"""Sending stored events back through delivery: a time range of the buffer, or given requests.

Replayed requests are appended to the buffer by a one-shot writer, marked ``replay`` and
restricted to the chosen sinks; they keep their event ids, so a sink that already holds an event
does not store it twice. A running server delivers them within a second; a stopped one, when it
next starts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec

from headrace.buffer.local.frames import KIND_DATA, encode_frame, scan_frames
from headrace.buffer.local.segments import SegmentWriter, list_segments, writer_of
from headrace.buffer.records import BufferedRequest

SEGMENT_BYTES = 64 * 1024**2
FLUSH_BYTES = 4 * 1024**2


def stored_requests(buffer_dir: Path, skip_writer: str | None = None) -> Iterator[BufferedRequest]:
    """Every request held in the buffer, segment by segment (replays excluded)."""
    for name in list_segments(buffer_dir):
        if skip_writer is not None and writer_of(name) == skip_writer:
            continue
        try:
            data = (buffer_dir / name).read_bytes()
        except FileNotFoundError:
            continue
        for frame in scan_frames(data, skip_damage=True).frames:
            if frame.kind == KIND_DATA:
                request = frame.request()
                if not request.replay:
                    yield request


class _ReplayWriter:
    def __init__(self, buffer_dir: Path, prefix: str) -> None:
        self.writer = SegmentWriter(
            buffer_dir,
            f"{prefix}-{uuid.uuid4().hex[:12]}",
            segment_bytes=SEGMENT_BYTES,
            segment_age=float("inf"),
        )
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    def __enter__(self) -> _ReplayWriter:
        self.writer.open()
        return self

    def add(self, request: BufferedRequest) -> None:
        frame = encode_frame(request)
        self.pending.append(frame)
        self.pending_bytes += len(frame)
        if self.pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.append(self.pending)
            self.pending, self.pending_bytes = [], 0

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.flush()
        self.writer.close()


def replay_range(
    buffer_dir: Path,
    *,
    stream: str,
    since_us: int,
    until_us: int,
    sinks: list[str] | None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Queue the stream's requests received in ``[since, until)`` again; returns events queued."""
    events = 0
    with _ReplayWriter(buffer_dir, "replay") as out:
        for request in stored_requests(buffer_dir, skip_writer=out.writer.writer):
            if request.stream != stream or not since_us <= request.received_at_us < until_us:
                continue
            out.add(msgspec.structs.replace(request, sinks=sinks, replay=True))
            events += request.count
            if progress is not None:
                progress(request.count)
    return events


def append_requests(buffer_dir: Path, requests: Iterable[BufferedRequest]) -> int:
    """Append ``requests`` in a one-shot segment of their own; returns the events they hold."""
    events = 0
    with _ReplayWriter(buffer_dir, "requeue") as out:
        for request in requests:
            out.add(request)
            events += request.count
    return events
