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
- One ingest request is one frame (see ``headrace.buffer.records``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import msgspec

from headrace.buffer.records import BufferedRequest, decode_request, encode_request

HEADER = struct.Struct("<2sBBII")


HEADER_SIZE = HEADER.size


MAGIC = b"HR"


KIND_DATA = 1


KIND_SEAL = 2


SEAL_FRAME = HEADER.pack(MAGIC, KIND_SEAL, 0, 0, zlib.crc32(b""))


MAX_PAYLOAD = 1 << 31


def encode_frame(request: BufferedRequest) -> bytes:
    """The bytes of one data frame holding ``request``."""
    payload = encode_request(request)
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
        return decode_request(self.payload)


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


__all__ = ["HEADER_SIZE", "KIND_DATA", "KIND_SEAL", "SEAL_FRAME", "Frame", "ScanResult",
           "encode_frame", "frame_length_at", "scan_frames"]  # fmt: skip
