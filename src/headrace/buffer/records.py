"""The on-disk record format of the local buffer.

A segment file is a sequence of frames::

    frame   = header payload
    header  = magic "HR" (2 bytes) | kind (1) | flags (1) | payload length (u32 LE) | CRC-32 (u32 LE)
    kind    = 1 data (payload is one msgpack-encoded ``BufferedRequest``) | 2 seal (empty payload)

Invariants:
- A frame is valid only if the whole payload is present and its CRC-32 matches; the first invalid
  frame of a segment ends it (a torn tail, from a crash mid-write, is cut off at recovery).
- A data frame's payload never ends in a zero byte (it is a msgpack array whose last item is a
  bool), so a segment whose last 12 bytes are the seal frame is sealed: nothing more is written.
- One ingest request is one frame: the body is kept as it arrived (decompressed), and event ids are
  derived from ``base_id`` (see ``headrace.ids``) unless the request carried its own.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgspec

from headrace.ids import event_ids
from headrace.types import Event

HEADER = struct.Struct("<2sBBII")
HEADER_SIZE = HEADER.size
MAGIC = b"HR"
KIND_DATA = 1
KIND_SEAL = 2
SEAL_FRAME = HEADER.pack(MAGIC, KIND_SEAL, 0, 0, zlib.crc32(b""))
MAX_PAYLOAD = 1 << 31

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


def encode_frame(request: BufferedRequest) -> bytes:
    """The bytes of one data frame holding ``request``."""
    payload = _encoder.encode(request)
    return HEADER.pack(MAGIC, KIND_DATA, 0, len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class Frame:
    """A valid frame read from a segment; ``end`` is the offset just past it."""

    start: int
    end: int
    kind: int
    payload: bytes

    def request(self) -> BufferedRequest:
        """Decode the data frame's request."""
        return _decoder.decode(self.payload)


class ScanResult(msgspec.Struct):
    """What scanning a byte range found: its valid frames and how the range ended."""

    frames: list[Frame]
    end: int  # offset just past the last valid frame
    stop: str  # "end" (clean), "partial" (frame cut short), "corrupt" (bad magic or CRC)


def scan_frames(data: bytes | memoryview, base_offset: int = 0) -> ScanResult:
    """Parse every valid frame in ``data`` (which starts at ``base_offset`` in the file)."""
    frames: list[Frame] = []
    view = memoryview(data)
    pos = 0
    size = len(view)
    stop = "end"
    while pos < size:
        if size - pos < HEADER_SIZE:
            stop = "partial"
            break
        magic, kind, _flags, length, crc = HEADER.unpack_from(view, pos)
        if magic != MAGIC or kind not in (KIND_DATA, KIND_SEAL) or length > MAX_PAYLOAD:
            stop = "corrupt"
            break
        end = pos + HEADER_SIZE + length
        if end > size:
            stop = "partial"
            break
        payload = bytes(view[pos + HEADER_SIZE : end])
        if zlib.crc32(payload) != crc:
            stop = "corrupt"
            break
        frames.append(Frame(base_offset + pos, base_offset + end, kind, payload))
        pos = end
    return ScanResult(frames, base_offset + pos, stop)


def frame_length_at(data: bytes, pos: int) -> int | None:
    """Total length of the frame whose header starts at ``pos``, if the header is readable."""
    if len(data) - pos < HEADER_SIZE:
        return None
    magic, _kind, _flags, length, _crc = HEADER.unpack_from(data, pos)
    if magic != MAGIC:
        return None
    return HEADER_SIZE + int(length)


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
