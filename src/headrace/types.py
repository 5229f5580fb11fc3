"""The core contracts every part of headrace shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec


class Event(msgspec.Struct, gc=False):
    """One accepted event as delivery sees it."""

    id: str
    stream: str
    source: str
    received_at_us: int
    data: dict[str, Any]
    may_repeat: bool = False
    """The id came from outside (an id field or header, a replay): the sink checks it is new."""

    def with_data(self, data: dict[str, Any]) -> Event:
        """The same event carrying ``data`` (what a transform hands on)."""
        return msgspec.structs.replace(self, data=data)


@dataclass(frozen=True)
class FailedRecord:
    """An event a sink refused for good, with a typed reason."""

    event: Event
    reason: str
    error: str


@dataclass
class WriteResult:
    """What a sink did with a batch: events it refused for good are listed, the rest are stored."""

    failed: list[FailedRecord] = field(default_factory=list)
