"""Event ids: UUIDv7, time-ordered, one per event without per-event work at ingest.

A request of N events gets one UUIDv7 as its base whose lowest 24 bits are zero; event ``i`` of the
request has id ``base + i``. The result is still a valid, time-ordered UUIDv7 (the index lives in
its random part), and delivery can derive every id from the stored request alone.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

INDEX_BITS = 24
MAX_EVENTS_PER_ID_BASE = 1 << INDEX_BITS
_INDEX_MASK = ~(MAX_EVENTS_PER_ID_BASE - 1)


class _RandomPool:
    """OS randomness fetched 4 KiB at a time: one system call per 400 ids instead of one each.
    (``os.urandom`` releases the GIL; on the ingest path every release let the group-commit
    thread in and made the event loop wait to get the GIL back.)"""

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()  # sink threads make file names while ingest makes ids

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._offset + size > len(self._buffer):
                self._buffer, self._offset = os.urandom(4096), 0
            chunk = self._buffer[self._offset : self._offset + size]
            self._offset += size
            return chunk

    def reset(self) -> None:
        self._buffer, self._offset = b"", 0
        self._lock = threading.Lock()


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.reset)  # a forked child must not reuse the parent's bytes


def new_base_id(now_ms: int | None = None) -> int:
    """A UUIDv7 as an int, with the low 24 bits free for the event index."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(_pool.take(10), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 68) << 64 & (0xFFF << 64)  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & 0x3FFFFFFFFFFFFFFF  # rand_b, 62 bits
    return value & _INDEX_MASK


def event_id(base: int, index: int) -> str:
    """The id of event ``index`` of a request whose base id is ``base``."""
    return str(uuid.UUID(int=base + index))


_SUFFIXES = [f"{index:06x}" for index in range(10_000)]
"""The last 6 hex digits of event ids 0..9,999: joined to a request's prefix in C (``map``) rather
than formatted one by one, which is most of what deriving a batch's ids costs at delivery."""


def event_ids(base: int, count: int) -> list[str]:
    """The ids of events ``0..count-1`` of a request (fast: the index is the last 6 hex digits)."""
    digits = f"{base:032x}"
    prefix = f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:26]}"
    if count <= len(_SUFFIXES):
        return list(map(prefix.__add__, _SUFFIXES[:count]))
    return [f"{prefix}{index:06x}" for index in range(count)]
