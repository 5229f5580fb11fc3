"""Event factories: batches of events whose data name themselves, so any store can be read back.

Every event made here carries its id in ``data["requestid"]`` (``KEY_FIELD``) unless a key is
given, an ordinal ``n`` and a ``page``; a sink that stores only the events' own fields (objects
in S3) is read back by that field, and a sink keyed by it (DynamoDB, a merging table) keeps one
row per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from headrace.types import Event

STREAM = "clicks"
SOURCE = "web"
KEY_FIELD = "requestid"
T0 = 1_763_800_000_000_000
"""2025-11-22T08:26:40Z in µs since the epoch: the receive time of the first event made here."""
FIELDS = {KEY_FIELD: "string", "n": "int64", "page": "string"}
"""The fields of the events made here, typed as the lake and Parquet schemas declare them."""


def event(
    event_id: str,
    n: int = 0,
    *,
    key: str | None = None,
    at: int | None = None,
    may_repeat: bool = False,
    **extra: Any,
) -> Event:
    """One event: ``requestid`` is ``key`` (default: the id), received ``n`` µs after ``T0``
    unless ``at`` says when."""
    data = {KEY_FIELD: event_id if key is None else key, "n": n, "page": f"/p{n}", **extra}
    received = T0 + n if at is None else at
    return Event(event_id, STREAM, SOURCE, received, data, may_repeat)


def batch(ids: Iterable[str], *, start: int = 0, may_repeat: bool = False) -> list[Event]:
    """Events with ``ids``, numbered from ``start``."""
    return [event(i, start + n, may_repeat=may_repeat) for n, i in enumerate(ids)]


def ids(prefix: str, count: int, start: int = 0) -> list[str]:
    """``count`` event ids: ``<prefix>0``, ``<prefix>1``..."""
    return [f"{prefix}{n}" for n in range(start, start + count)]


def replayed(events: Sequence[Event]) -> list[Event]:
    """The same events as ``headrace replay`` or a client's resend hands them over again: same
    ids and data, ``may_repeat`` set (the sink must check they are new)."""
    return [msgspec.structs.replace(e, may_repeat=True) for e in events]


def raw_event(event_id: str, raw: bytes, n: int = 0) -> Event:
    """An event a Firehose-contract function returned as bytes that are not one JSON object."""
    return event(event_id, n).with_raw(raw)


__all__ = [
    "FIELDS",
    "KEY_FIELD",
    "SOURCE",
    "STREAM",
    "T0",
    "batch",
    "event",
    "ids",
    "raw_event",
    "replayed",
]
