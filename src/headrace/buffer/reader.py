"""Reading the local buffer for one sink: frames after the sink's committed positions."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from headrace.buffer.records import (
    HEADER_SIZE,
    KIND_SEAL,
    BufferedRequest,
    frame_length_at,
    scan_frames,
)
from headrace.buffer.segments import is_sealed, list_segments

log = logging.getLogger("headrace.buffer")


@dataclass(frozen=True)
class ReadItem:
    """One stored request and the position just past it."""

    segment: str
    end: int
    request: BufferedRequest
    size: int


class BufferReader:
    """Reads ahead of a sink's committed positions; positions are committed by the caller."""

    def __init__(self, directory: Path, positions: dict[str, int], done: set[str]) -> None:
        self.directory = directory
        self.positions = dict(positions)  # read-ahead offset per segment
        self.done = set(done)  # segments read to their seal
        self.corrupt_segments = 0

    def pending_segments(self) -> list[str]:
        """Segments that may still hold frames this reader has not read."""
        return [name for name in list_segments(self.directory) if name not in self.done]

    def poll(self, max_bytes: int, max_events: int = 1 << 62) -> tuple[list[ReadItem], list[str]]:
        """Read new frames, stopping once about ``max_bytes`` or ``max_events`` are taken (one frame
        always fits); also return the segments now read to their seal."""
        items: list[ReadItem] = []
        finished: list[str] = []
        budget = max_bytes
        events = max_events
        for name in self.pending_segments():
            if budget <= 0 or events <= 0:
                break
            got, sealed = self._read_segment(name, budget, events)
            items.extend(got)
            budget -= sum(item.size for item in got)
            events -= sum(item.request.count for item in got)
            if sealed:
                self.done.add(name)
                finished.append(name)
        return items, finished

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
            items.append(ReadItem(name, frame.end, request, frame.end - frame.start))
            events -= request.count
            self.positions[name] = frame.end
        if result.stop == "corrupt" and not sealed and is_sealed(path):
            # A sealed segment never has a torn tail (recovery cut it): this is damage on disk.
            self.corrupt_segments += 1
            log.error(
                "buffer segment %s: unreadable frame at offset %d; skipping the rest of it",
                name,
                result.end,
            )
            self.positions[name] = os.path.getsize(path)
            sealed = True
        return items, sealed

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
