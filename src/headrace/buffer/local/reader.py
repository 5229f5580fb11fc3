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
from typing import Any, BinaryIO

from headrace.buffer.base import Backlog, Polled, ReadItem
from headrace.buffer.local.frames import (
    HEADER,
    HEADER_SIZE,
    KIND_DATA,
    KIND_SEAL,
    MAGIC,
    SEAL_FRAME,
    ScanResult,
    frame_length_at,
    resume_offset,
    scan_frames,
)
from headrace.buffer.local.positions import POSITIONS_SCHEMA, load_positions, save_positions
from headrace.buffer.local.quarantine import quarantine, quarantine_path
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
        self.corrupt = 0  # damaged segments met (headrace_buffer_corrupt_segments_total)
        self.skipped_frames = 0  # damaged ranges skipped, one or more frames each
        self.quarantined_bytes = 0  # bytes this reader copied to the quarantine folder
        self._damaged_segments: set[str] = set()

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
        """Read frames of ``name`` within the budget, reading on past any damaged range."""
        items: list[ReadItem] = []
        while True:
            got, sealed, skipped = self._read_chunk(name, budget, events)
            items.extend(got)
            budget -= sum(item.size for item in got)
            events -= sum(item.request.count for item in got)
            if sealed or not skipped or budget <= 0 or events <= 0:
                return items, sealed

    def _read_chunk(self, name: str, budget: int, events: int) -> tuple[list[ReadItem], bool, bool]:
        """Frames from the position on, whether the seal was read, and whether a damaged range
        was skipped (the position is then just past it)."""
        path = self.directory / name
        offset = self.positions.get(name, 0)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size <= offset:
                    return [], False, False
                f.seek(offset)
                data = f.read(min(size - offset, max(budget, HEADER_SIZE)))
                first = frame_length_at(data, 0)
                if first is not None and first > len(data) and offset + first <= size:
                    data += f.read(first - len(data))  # one frame larger than the budget
                result = scan_frames(data, offset)
                items, sealed, full = self._take(name, result, events)
                if sealed or full or result.stop == "end" or not is_sealed(path):
                    # an unsealed segment's writer may still be writing what follows
                    return items, sealed, False
                if result.stop == "partial" and _fits(f, result.end, size):
                    return items, False, False  # the next frame is whole: the next chunk
                self._skip_damage(name, f, result.end, size)
                return items, False, True
        except FileNotFoundError:
            self.done.add(name)
            return [], False, False

    def _take(
        self, name: str, result: ScanResult, events: int
    ) -> tuple[list[ReadItem], bool, bool]:
        """The scanned frames as items up to ``events``, moving the position past each; whether
        the seal was read, and whether the event budget ran out first."""
        items: list[ReadItem] = []
        for frame in result.frames:
            if frame.kind == KIND_SEAL:
                self.positions[name] = frame.end
                return items, True, False
            if events <= 0:
                return items, False, True  # the batch is full: the rest waits for the next poll
            request = frame.request()
            items.append(ReadItem(request, frame.end - frame.start, f"{name}@{frame.end}"))
            events -= request.count
            self.positions[name] = frame.end
        return items, False, False

    def _skip_damage(self, name: str, f: BinaryIO, start: int, size: int) -> None:
        """Move past the damaged range at ``start`` of the sealed segment ``name``: counted,
        logged (where and how long, never its bytes) and copied to the quarantine folder."""
        f.seek(start)
        rest = f.read(size - start)
        resume = resume_offset(rest, 0)
        # a sealed segment ends with a whole seal frame, so something valid always follows
        length = max(0, len(rest) - len(SEAL_FRAME)) if resume is None else resume
        damaged = rest[:length]
        if name not in self._damaged_segments:
            self._damaged_segments.add(name)
            self.corrupt += 1
        self.skipped_frames += 1
        if quarantine(self.directory, name, start, damaged):
            self.quarantined_bytes += len(damaged)
        log.warning(
            "buffer segment %s: damaged frame(s) at offset %d, %d bytes, skipped by sink %s; "
            "the bytes are kept in %s",
            name, start, length, self.sink, quarantine_path(self.directory, name, start),
        )  # fmt: skip
        self.positions[name] = start + length

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


def _fits(f: BinaryIO, pos: int, size: int) -> bool:
    """Whether the frame at ``pos`` has a readable data header and ends before the seal: a frame
    the chunk cut short, not damage (its checksum is checked when it is read whole)."""
    f.seek(pos)
    head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE:
        return False
    magic, kind, _flags, length, _crc = HEADER.unpack_from(head)
    end: int = pos + HEADER_SIZE + length
    return magic == MAGIC and kind == KIND_DATA and end <= size - len(SEAL_FRAME)
