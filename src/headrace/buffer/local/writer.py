"""The ingest side of the local buffer: a worker's durable appends with group commit.

Requests committed while the previous write and fsync ran are written together and fsync'd once,
by one thread per worker; each request's future resolves when its frame is on disk. The event
loop gathers the frames of one pass over its ready callbacks (every request that arrived
together) and hands them to the commit thread at once: one lock and one wake-up per pass, not
per request, and a commit takes everything that arrived while the previous fsync ran. A
``CapacityGuard`` refuses appends while the buffer is over ``max_bytes`` or the disk is below its
reserve (``BufferFull``, answered 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

from headrace.buffer.local.frames import encode_frame, scan_frames
from headrace.buffer.local.segments import SegmentWriter, directory_bytes
from headrace.buffer.orderlog import ORDER_LOG, note_order
from headrace.buffer.records import BufferedRequest
from headrace.errors import BufferFull
from headrace.telemetry import stageclock
from headrace.telemetry.stageclock import STAGE_CLOCK

log = logging.getLogger("headrace.buffer")
if STAGE_CLOCK:  # a benchmark's profile (telemetry/stageclock.py): the CPU of encoding frames
    encode_frame = stageclock.clocked("frame encode", encode_frame)


class CapacityGuard:
    """Refuses appends while the buffer is over its size or the disk is nearly full."""

    def __init__(self, directory: Path, *, max_bytes: int, min_free_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.reason: str | None = None
        self.buffer_bytes = 0

    def refresh(self) -> None:
        """Measure the buffer and the disk again."""
        self.buffer_bytes = directory_bytes(self.directory)
        stats = os.statvfs(self.directory)
        free = stats.f_bavail * stats.f_frsize
        if self.buffer_bytes >= self.max_bytes:
            self.reason = (
                f"the buffer holds {self.buffer_bytes} bytes, its limit is {self.max_bytes}"
            )
        elif free < self.min_free_bytes:
            self.reason = f"the disk has {free} bytes free, below the {self.min_free_bytes} reserve"
        else:
            self.reason = None


class LocalWriter:
    """One ingest worker's ``BufferWriter``: concurrent requests share one write and one fsync."""

    def __init__(
        self, writer: SegmentWriter, guard: CapacityGuard, *, refresh_every: float = 1.0
    ) -> None:
        self.writer = writer
        self.guard = guard
        self.refresh_every = refresh_every
        self.commits = 0
        self.frames_committed = 0
        self.healthy = True
        self.last_error: str | None = None
        self._pending: deque[tuple[bytes, asyncio.Future[None]]] = deque()
        # this loop pass's frames, touched only by the event loop's thread (no lock)
        self._gathered: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        append = writer.append  # the commit thread's write and fsync, clocked for a profile
        self._append = stageclock.clocked_wall("write + fsync", append) if STAGE_CLOCK else append

    def start(self) -> int:
        """Open the writer (recovering its earlier segments) and start the commit thread;
        returns the torn tails cut off."""
        self._loop = asyncio.get_running_loop()
        self.writer.open()
        self.guard.refresh()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()
        return sum(1 for r in self.writer.recovered if r.torn_bytes)

    async def commit(self, request: BufferedRequest) -> None:
        """Return once ``request`` is on disk; raise ``BufferFull`` if the buffer cannot take it."""
        await self.commit_frame(encode_frame(request))

    def problem(self) -> str | None:
        """Why commits fail (the last one did) or are refused (full), or ``None``."""
        if not self.healthy:
            return f"cannot write: {self.last_error}"
        return self.guard.reason

    def stored_bytes(self) -> int:
        """Bytes the buffer's segments held at the last measure (about once a second)."""
        return self.guard.buffer_bytes

    async def commit_frame(self, frame: bytes) -> None:
        """Return once ``frame`` is on disk; raise ``BufferFull`` if the buffer cannot take it."""
        if self.guard.reason is not None:
            raise BufferFull(self.guard.reason)
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._gathered.append((frame, future))
        if len(self._gathered) == 1:  # the pass's first: hand over once the pass has run
            self._loop.call_soon(self._hand_over)
        await (stageclock.waited("fsync wait", future) if STAGE_CLOCK else future)

    def _hand_over(self) -> None:
        """Give the commit thread the frames this loop pass gathered (runs on the loop)."""
        gathered, self._gathered = self._gathered, []
        with self._wake:
            self._pending.extend(gathered)
            self._wake.notify()

    def _run(self) -> None:
        last_refresh = time.monotonic()
        while True:
            with self._wake:
                if not self._pending and not self._stopping:
                    self._wake.wait(timeout=self.refresh_every)
                batch = list(self._pending)
                self._pending.clear()
                stopping = self._stopping
            if batch:
                self._commit_batch(batch)
            now = time.monotonic()
            if now - last_refresh >= self.refresh_every:
                last_refresh = now
                self._housekeeping()
            if stopping and not batch:
                return

    def _commit_batch(self, batch: list[tuple[bytes, asyncio.Future[None]]]) -> None:
        error: BaseException | None = None
        try:
            self._append([frame for frame, _ in batch])
            if ORDER_LOG:  # a test hook: the fsync has returned, no future is settled yet
                for frame, _ in batch:
                    note_order("committed", scan_frames(frame).frames[0].request().base_id)
            self.commits += 1
            self.frames_committed += len(batch)
            self.healthy, self.last_error = True, None
        except BufferFull as exc:
            error = exc
            self.healthy, self.last_error = False, str(exc)
        except Exception as exc:  # never leave a request waiting on a dead thread
            log.exception("buffer: commit failed")
            error = BufferFull(f"the buffer cannot be written: {exc}")
            self.healthy, self.last_error = False, str(exc)
        assert self._loop is not None
        futures = [future for _, future in batch]
        self._loop.call_soon_threadsafe(_settle, futures, error)

    def _housekeeping(self) -> None:
        try:
            self.writer.maybe_roll()
            self.guard.refresh()
        except OSError as exc:
            self.healthy, self.last_error = False, str(exc)
            self.writer._abandon_current()

    async def stop(self) -> None:
        """Commit what is pending, seal the segment and stop the thread."""
        await asyncio.to_thread(self.stop_blocking)

    def stop_blocking(self) -> None:
        """``stop`` for a caller that is not a coroutine."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        self.writer.close()


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


if STAGE_CLOCK:  # a benchmark's profile: waking the requests a commit made durable
    _settle = stageclock.clocked("settle", _settle)


__all__ = ["CapacityGuard", "LocalWriter"]
