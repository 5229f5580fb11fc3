"""Event ids: UUIDv7, time-ordered, one per event without per-event work at ingest.

A request of N events gets one UUIDv7 as its base whose lowest 24 bits are zero; event ``i`` of the
request has id ``base + i``. The result is still a valid, time-ordered UUIDv7 (the index lives in
its random part), and delivery can derive every id from the stored request alone.
"""

from __future__ import annotations

import os
import time
import uuid

INDEX_BITS = 24
MAX_EVENTS_PER_ID_BASE = 1 << INDEX_BITS
_INDEX_MASK = ~(MAX_EVENTS_PER_ID_BASE - 1)


def new_base_id(now_ms: int | None = None) -> int:
    """A UUIDv7 as an int, with the low 24 bits free for the event index."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 68) << 64 & (0xFFF << 64)  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & 0x3FFFFFFFFFFFFFFF  # rand_b, 62 bits
    return value & _INDEX_MASK


def event_id(base: int, index: int) -> str:
    """The id of event ``index`` of a request whose base id is ``base``."""
    return str(uuid.UUID(int=base + index))


def base_id_str(base: int) -> str:
    """The canonical text form of a base id (the id of the request's first event)."""
    return str(uuid.UUID(int=base))


def event_ids(base: int, count: int) -> list[str]:
    """The ids of events ``0..count-1`` of a request (fast: the index is the last 6 hex digits)."""
    prefix = str(uuid.UUID(int=base))[:-6]
    return [f"{prefix}{index:06x}" for index in range(count)]
