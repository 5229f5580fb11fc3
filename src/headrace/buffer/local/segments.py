"""Segment files of the local buffer: appending, recovery after a crash, listing.

Layout: ``<data>/buffer/<created µs, 16 hex digits>-<writer>.seg``; names sort by creation time.
Each writer (an ingest worker slot ``w0``, ``w1``…, or a one-shot ``replay-…`` writer) appends to
its own segment, so writers never contend, and holds an exclusive ``flock`` on it while it is
open. A segment whose lock can be taken and which is not sealed belongs to a writer that died:
recovery cuts off its torn tail (what follows its last valid frame; counted and logged) and seals
it. A damaged range before valid frames is left in place for the readers to skip and quarantine.
See ``frames`` for the frames.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from headrace.buffer.local.frames import HEADER_SIZE, SEAL_FRAME, scan_frames
from headrace.errors import BufferFull
from headrace.storage.files import fsync_path

log = logging.getLogger("headrace.buffer")

SUFFIX = ".seg"


def segment_name(writer: str, created_us: int | None = None) -> str:
    """File name of a new segment of ``writer``."""
    created = time.time_ns() // 1000 if created_us is None else created_us
    return f"{created:016x}-{writer}{SUFFIX}"


def writer_of(name: str) -> str:
    """The writer that owns segment ``name``."""
    return name[17 : -len(SUFFIX)]


def list_segments(directory: Path) -> list[str]:
    """Names of every segment in ``directory``, oldest first."""
    try:
        names = [e.name for e in os.scandir(directory) if e.name.endswith(SUFFIX)]
    except FileNotFoundError:
        return []
    return sorted(names)


def is_sealed(path: Path) -> bool:
    """Whether the segment at ``path`` ends with the seal frame."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < len(SEAL_FRAME):
                return False
            f.seek(-len(SEAL_FRAME), os.SEEK_END)
            return f.read(len(SEAL_FRAME)) == SEAL_FRAME
    except FileNotFoundError:
        return False


def directory_bytes(directory: Path) -> int:
    """Total size of the segments in ``directory``."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.endswith(SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
    return total


@dataclass(frozen=True)
class Recovery:
    """What recovering one segment did."""

    name: str
    torn_bytes: int
    sealed: bool


def recover_segment(path: Path) -> Recovery | None:
    """Seal the segment of a dead writer, cutting off a torn tail; ``None`` if its writer lives."""
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its writer still holds it
        size = os.fstat(fd).st_size
        if size >= len(SEAL_FRAME):
            os.lseek(fd, size - len(SEAL_FRAME), os.SEEK_SET)
            if os.read(fd, len(SEAL_FRAME)) == SEAL_FRAME:
                return Recovery(path.name, 0, False)
        os.lseek(fd, 0, os.SEEK_SET)
        data = _read_all(fd, size)
        result = scan_frames(data, skip_damage=True)
        torn = size - result.end
        if torn:
            log.warning(
                "buffer segment %s: torn tail of %d bytes after offset %d (%s) cut off",
                path.name,
                torn,
                result.end,
                result.stop,
            )
            os.ftruncate(fd, result.end)
        os.lseek(fd, result.end, os.SEEK_SET)
        _write_all(fd, SEAL_FRAME)
        os.fsync(fd)
        return Recovery(path.name, torn, True)
    finally:
        os.close(fd)  # releases the lock


def _remove_abandoned_new_files(directory: Path) -> None:
    """Remove segments a writer created but died before naming (always empty)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if not (entry.name.startswith(".") and entry.name.endswith(f"{SUFFIX}.new")):
                continue
            with contextlib.suppress(OSError):
                fd = os.open(entry.path, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(entry.path)
                except BlockingIOError:
                    pass  # its writer is naming it right now
                finally:
                    os.close(fd)


def recover_dead_writers(directory: Path, writer: str | None = None) -> list[Recovery]:
    """Seal every unsealed segment whose writer is gone (only ``writer``'s, when given)."""
    _remove_abandoned_new_files(directory)
    done = []
    for name in list_segments(directory):
        if writer is not None and writer_of(name) != writer:
            continue
        path = directory / name
        if is_sealed(path):
            continue
        with contextlib.suppress(FileNotFoundError):
            recovery = recover_segment(path)
            if recovery is not None and recovery.sealed:
                done.append(recovery)
    return done


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class SegmentWriter:
    """Appends frames to one writer's segments; every ``append`` is durable when it returns."""

    def __init__(
        self, directory: Path, writer: str, *, segment_bytes: int, segment_age: float
    ) -> None:
        self.directory = directory
        self.writer = writer
        self.segment_bytes = segment_bytes
        self.segment_age = segment_age
        self._fd: int | None = None
        self._size = 0
        self._opened_at = 0.0
        self.name = ""
        self.recovered: list[Recovery] = []

    def open(self) -> None:
        """Recover this writer's earlier segments, then start a fresh one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.recovered = recover_dead_writers(self.directory, self.writer)
        self._start_segment()

    def _start_segment(self) -> None:
        # Created and locked under a name no one scans, then renamed into place: recovery must
        # never find (and seal) a segment its writer has not locked yet.
        name = segment_name(self.writer)
        hidden = self.directory / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, self.directory / name)
            fsync_path(self.directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                hidden.unlink()
            raise
        self.name = name
        self._fd, self._size, self._opened_at = fd, 0, time.monotonic()

    def _seal_current(self) -> None:
        if self._fd is None:
            return
        _write_all(self._fd, SEAL_FRAME)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None

    def _abandon_current(self) -> None:
        """Give up a segment whose write failed: a reader may already have read past where a
        cut-back would end, so it is never cut back or written again. Closing releases the lock;
        recovery then cuts any partial frame (which no reader takes) and seals it."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def append(self, frames: list[bytes]) -> None:
        """Write ``frames`` and fsync once. On failure the segment is abandoned (the next append
        starts a new one) and the frames count as not stored, though whole ones may be delivered
        (at least once: the sender was told to retry)."""
        if self._fd is None:
            try:
                self._start_segment()
            except OSError as exc:
                raise _as_buffer_error(exc) from exc
        assert self._fd is not None
        data = b"".join(frames)
        try:
            _write_all(self._fd, data)
            os.fdatasync(self._fd)
        except OSError as exc:
            self._abandon_current()
            raise _as_buffer_error(exc) from exc
        self._size += len(data)
        try:
            self.maybe_roll()
        except OSError as exc:
            # The frames are durable; only the next segment could not be started. The next
            # append tries again (and answers 503 if it still cannot).
            log.error("buffer: cannot start a new segment: %s", exc)
            self._abandon_current()

    def maybe_roll(self) -> None:
        """Seal the segment and start a new one when it is big or old enough."""
        if self._fd is None or self._size == 0:
            return
        too_old = time.monotonic() - self._opened_at >= self.segment_age
        if self._size >= self.segment_bytes or too_old:
            self._seal_current()
            self._start_segment()

    def close(self) -> None:
        """Seal the open segment (removing it if empty) and release it."""
        if self._fd is None:
            return
        if self._size == 0:
            os.close(self._fd)
            self._fd = None
            with contextlib.suppress(FileNotFoundError):
                (self.directory / self.name).unlink()
            return
        self._seal_current()


def _as_buffer_error(exc: OSError) -> BufferFull:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BufferFull("the disk holding the buffer is full")
    return BufferFull(f"the buffer cannot be written: {exc.strerror}")


__all__ = [
    "HEADER_SIZE",
    "Recovery",
    "SegmentWriter",
    "directory_bytes",
    "is_sealed",
    "list_segments",
    "recover_dead_writers",
    "recover_segment",
    "segment_name",
    "writer_of",
]
