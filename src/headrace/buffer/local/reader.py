"""Reading the local buffer for one sink: frames after the sink's committed positions.

A ``SegmentReader`` reads ahead of what its sink acknowledged; a ``PositionAck`` gathers the
offsets a batch read (and the segments it read to their seal) and saves them in the state
database in the batch's transaction, then moves the reader's acknowledged positions (what the
backlog is measured from).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.buffer.base import Backlog, Polled, ReadItem
from headrace.buffer.local.frames import HEADER_SIZE, KIND_SEAL, frame_length_at, scan_frames
from headrace.buffer.local.positions import POSITIONS_SCHEMA, load_positions, save_positions
from headrace.buffer.local.segments import is_sealed, list_segments

log = logging.getLogger("headrace.buffer")


@dataclass
class _Progress:
    positions: dict[str, int]
    finished: list[str]


class PositionAck:
    """The offsets one batch read, saved as the sink's positions (see the module docstring)."""

    def __init__(
        self,
        sink: str,
        positions: dict[str, int] | None = None,
        finished: set[str] | None = None,
        reader: SegmentReader | None = None,
    ) -> None:
        self.sink = sink
        self.positions: dict[str, int] = dict(positions or {})
        self.finished: set[str] = set(finished or ())
        self.reader = reader

    @property
    def empty(self) -> bool:
        return not self.positions and not self.finished

    def include(self, progress: Any) -> None:
        assert isinstance(progress, _Progress)
        self.positions.update(progress.positions)
        self.finished.update(progress.finished)

    def record(self, conn: sqlite3.Connection) -> None:
        save_positions(conn, self.sink, self.positions, self.finished)

    def settle(self) -> None:
        if self.reader is not None:
            # one assignment: the upkeep thread reads the acknowledged positions meanwhile
            self.reader.acknowledged = {**self.reader.acknowledged, **self.positions}


class SegmentReader:
    """Reads ahead of a sink's acknowledged positions (see the module docstring)."""

    def __init__(
        self, directory: Path, sink: str, positions: dict[str, int], done: set[str]
    ) -> None:
        self.directory = directory
        self.sink = sink
        self.positions = dict(positions)  # read-ahead offset per segment
        self.done = set(done)  # segments read to their seal
        self.acknowledged = dict(positions)
        self.corrupt = 0

    @classmethod
    def for_sink(cls, directory: Path, sink: str, conn: sqlite3.Connection) -> SegmentReader:
        """The reader of ``sink``, after the positions it saved."""
        conn.executescript(POSITIONS_SCHEMA)
        positions, done = load_positions(conn, sink)
        return cls(directory, sink, positions, done)

    def acknowledgement(self) -> PositionAck:
        return PositionAck(self.sink, reader=self)

    def close(self) -> None:
        pass

    def pending_segments(self) -> list[str]:
        """Segments that may still hold frames this reader has not read."""
        return [name for name in list_segments(self.directory) if name not in self.done]

    def poll(self, max_bytes: int, max_events: int = 1 << 62) -> Polled:
        """Read new frames, stopping once about ``max_bytes`` or ``max_events`` are taken (one frame
        always fits); the progress holds the offsets read and the segments read to their seal."""
        items: list[ReadItem] = []
        progress = _Progress({}, [])
        budget = max_bytes
        events = max_events
        for name in self.pending_segments():
            if budget <= 0 or events <= 0:
                break
            before = self.positions.get(name)
            got, sealed = self._read_segment(name, budget, events)
            items.extend(got)
            budget -= sum(item.size for item in got)
            events -= sum(item.request.count for item in got)
            if sealed:
                self.done.add(name)
                progress.finished.append(name)
            if sealed or self.positions.get(name) != before:
                progress.positions[name] = self.positions[name]
        return Polled(items, progress, bool(items or progress.positions or progress.finished))

    def _read_segment(self, name: str, budget: int, events: int) -> tuple[list[ReadItem], bool]:
        path = self.directory / name
        offset = self.positions.get(name, 0)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size <= offset:
                    return [], False
                f.seek(offset)
                data = f.read(min(size - offset, max(budget, HEADER_SIZE)))
                first = frame_length_at(data, 0)
                if first is not None and first > len(data) and offset + first <= size:
                    data += f.read(first - len(data))  # one frame larger than the budget
        except FileNotFoundError:
            self.done.add(name)
            return [], False
        result = scan_frames(data, offset)
        items: list[ReadItem] = []
        sealed = False
        for frame in result.frames:
            if frame.kind == KIND_SEAL:
                sealed = True
                self.positions[name] = frame.end
                break
            if events <= 0:
                return items, False  # the batch is full: the rest waits for the next poll
            request = frame.request()
            items.append(ReadItem(request, frame.end - frame.start, f"{name}@{frame.end}"))
            events -= request.count
            self.positions[name] = frame.end
        if result.stop == "corrupt" and not sealed and is_sealed(path):
            # A sealed segment never has a torn tail (recovery cut it): this is damage on disk.
            self.corrupt += 1
            log.error(
                "buffer segment %s: unreadable frame at offset %d; skipping the rest of it",
                name,
                result.end,
            )
            self.positions[name] = os.path.getsize(path)
            sealed = True
        return items, sealed

    def backlog(self) -> Backlog:
        """What is stored after the acknowledged positions (from any thread)."""
        acknowledged = self.acknowledged  # one read: settle() replaces it whole
        return Backlog(
            self.backlog_bytes(acknowledged), self.oldest_unread_received_at(acknowledged)
        )

    def backlog_bytes(self, committed: dict[str, int]) -> int:
        """Bytes stored after ``committed`` positions, over every segment not yet finished."""
        total = 0
        for name in self.pending_segments():
            try:
                size = (self.directory / name).stat().st_size
            except FileNotFoundError:
                continue
            total += max(0, size - committed.get(name, 0))
        return total

    def oldest_unread_received_at(self, committed: dict[str, int]) -> int | None:
        """Receive time (µs) of the oldest request after ``committed``, if any."""
        oldest: int | None = None
        for name in self.pending_segments():
            offset = committed.get(name, 0)
            try:
                with open(self.directory / name, "rb") as f:
                    f.seek(offset)
                    head = f.read(HEADER_SIZE)
                    length = frame_length_at(head, 0)
                    if length is None:
                        continue
                    data = head + f.read(length - HEADER_SIZE)
            except FileNotFoundError:
                continue
            result = scan_frames(data, offset)
            if result.frames and result.frames[0].kind != KIND_SEAL:
                received = result.frames[0].request().received_at_us
                oldest = received if oldest is None else min(oldest, received)
        return oldest
