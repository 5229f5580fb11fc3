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
    raw: bytes | None = None
    """What a Firehose-contract transform returned when it is not one JSON object (CSV, a line
    of text): the bytes as they are, for a sink that writes lines; ``data`` is then empty."""

    def with_data(self, data: dict[str, Any]) -> Event:
        """The same event carrying ``data`` (what a transform hands on)."""
        return msgspec.structs.replace(self, data=data, raw=None)

    def with_raw(self, raw: bytes) -> Event:
        """The same event carrying opaque bytes instead of a JSON object."""
        return msgspec.structs.replace(self, data={}, raw=raw)

    def raw_line(self) -> bytes:
        """``raw`` as one line: without the newline functions end a record with."""
        raw = self.raw or b""
        return raw[:-1] if raw.endswith(b"\n") else raw


@dataclass(frozen=True)
class ProcessingFailure:
    """How a Firehose-contract transform failed a record, in Firehose's terms (what an s3
    sink writes to its ``processing-failed`` error output)."""

    error_code: str
    """Firehose's error code, e.g. ``Lambda.ProcessingFailed`` or ``Lambda.FunctionError``."""
    lambda_arn: str
    """The function's ARN as the transform presents it."""


@dataclass(frozen=True)
class FailedRecord:
    """An event a sink refused for good, with a typed reason."""

    event: Event
    reason: str
    error: str
    processing: ProcessingFailure | None = None
    """Set when a Firehose-contract transform failed the record."""


@dataclass
class WriteResult:
    """What a sink did with a batch: events it refused for good are listed, the rest are stored."""

    failed: list[FailedRecord] = field(default_factory=list)
