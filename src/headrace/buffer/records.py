"""What a buffer stores: one accepted request (``BufferedRequest``), whatever the backend.

The body is kept as it arrived (decompressed) with its format, and event ids are derived from
``base_id`` (see ``headrace.ids``) unless the request carried its own; ``expand_events`` turns a
stored request back into its events at delivery. ``encode_request`` / ``decode_request`` are its
bytes (msgpack; a buffer wraps them as it needs: a checksummed frame, a message).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import msgspec

from headrace.ids import event_ids
from headrace.storage.state import DeadLetter
from headrace.types import Event

FORMAT_OBJECT = 0  # body is one JSON object
FORMAT_ARRAY = 1  # body is a JSON array of objects
FORMAT_NDJSON = 2  # body is newline-delimited JSON objects


class BufferedRequest(msgspec.Struct, array_like=True, gc=False):
    """One accepted request (or one group of replayed events) as stored in the buffer."""

    received_at_us: int
    base_id: bytes
    stream: str
    source: str
    count: int
    fmt: int
    body: bytes
    ids: list[str] | None = None
    received_ats_us: list[int] | None = None
    sinks: list[str] | None = None
    replay: bool = False


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BufferedRequest)
_json_decoder = msgspec.json.Decoder()


def encode_request(request: BufferedRequest) -> bytes:
    """The bytes of ``request`` (its payload in any buffer)."""
    return _encoder.encode(request)


def decode_request(payload: bytes) -> BufferedRequest:
    """The request ``payload`` holds (``msgspec.DecodeError`` if it holds none)."""
    return _decoder.decode(payload)


def _decode_events(request: BufferedRequest) -> list[Any]:
    if request.fmt == FORMAT_OBJECT:
        return [_json_decoder.decode(request.body)]
    if request.fmt == FORMAT_ARRAY:
        items = _json_decoder.decode(request.body)
        return items if isinstance(items, list) else [items]
    # Split exactly as ingest did (on "\n" only): a bare "\r" inside a line is JSON whitespace.
    return [
        _json_decoder.decode(line) for line in request.body.split(b"\n") if line.strip(b" \t\r\n")
    ]


def expand_events(request: BufferedRequest) -> list[Event]:
    """The events of a stored request, with their ids and receive times."""
    items = _decode_events(request)
    ids = request.ids
    generated = (
        event_ids(int.from_bytes(request.base_id, "big"), len(items)) if ids is None else None
    )
    times = request.received_ats_us
    events = []
    for index, data in enumerate(items):
        events.append(
            Event(
                id=ids[index] if ids is not None else generated[index],  # type: ignore[index]
                stream=request.stream,
                source=request.source,
                received_at_us=times[index] if times is not None else request.received_at_us,
                data=data,
                may_repeat=request.replay or ids is not None,
            )
        )
    return events


def dead_letter_requests(letters: list[DeadLetter]) -> list[BufferedRequest]:
    """Dead letters as requests for the sink that refused each (grouped by sink, stream and
    source; ids and receive times kept), marked ``replay``."""
    groups: dict[tuple[str, str, str], list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        groups[(letter.sink, letter.stream, letter.source)].append(letter)
    requests = []
    for (sink, stream, source), group in groups.items():
        body = b"[" + b",".join(letter.data.encode() for letter in group) + b"]"
        requests.append(
            BufferedRequest(
                received_at_us=group[0].received_at_us,
                base_id=os.urandom(16),
                stream=stream,
                source=source,
                count=len(group),
                fmt=FORMAT_ARRAY,
                body=body,
                ids=[letter.event_id for letter in group],
                received_ats_us=[letter.received_at_us for letter in group],
                sinks=[sink],
                replay=True,
            )
        )
    return requests
