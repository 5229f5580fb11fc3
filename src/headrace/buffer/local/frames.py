"""The on-disk record format of the local buffer.

A segment file is a sequence of frames::

    frame   = header payload
    header  = magic "HR" (2 bytes) | kind (1) | flags (1) | payload length (u32 LE) | CRC-32 (u32 LE)
    kind    = 1 data (payload is one msgpack-encoded ``BufferedRequest``) | 2 seal (empty payload)

Invariants:
- A frame is valid only if the whole payload is present and its CRC-32 matches. Where a segment
  holds bytes that are not a valid frame, reading resumes at the next valid frame after them
  (``resume_offset``), so damage on disk costs only the frames it touched; what follows the last
  valid frame of a segment its writer left unsealed is a torn tail, cut off at recovery.
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
    skipped: list[tuple[int, int]] = []  # damaged ranges [start, end) read past (skip_damage)


def scan_frames(
    data: bytes | memoryview, base_offset: int = 0, *, skip_damage: bool = False
) -> ScanResult:
    """Parse every valid frame in ``data`` (which starts at ``base_offset`` in the file). With
    ``skip_damage``, invalid bytes followed by a valid frame are skipped (and listed) instead of
    ending the scan."""
    frames: list[Frame] = []
    skipped: list[tuple[int, int]] = []
    view = memoryview(data)
    pos = 0
    size = len(view)
    stop = "end"
    while pos < size:
        if size - pos < HEADER_SIZE:
            stop = "partial"
            break
        magic, kind, _flags, length, crc = HEADER.unpack_from(view, pos)
        end = pos + HEADER_SIZE + length
        if magic != MAGIC or kind not in (KIND_DATA, KIND_SEAL) or length > MAX_PAYLOAD:
            stop = "corrupt"
        elif end > size:
            stop = "partial"
        else:
            payload = bytes(view[pos + HEADER_SIZE : end])
            if zlib.crc32(payload) == crc:
                frames.append(Frame(base_offset + pos, base_offset + end, kind, payload))
                pos = end
                continue
            stop = "corrupt"
        resume = resume_offset(bytes(view), pos) if skip_damage else None
        if resume is None:
            break
        skipped.append((base_offset + pos, base_offset + resume))
        stop = "end"
        pos = resume
    return ScanResult(frames, base_offset + pos, stop, skipped)


def frame_at(data: bytes, pos: int) -> Frame | None:
    """The valid frame whose header starts at ``pos`` in ``data``, if there is one."""
    length = _plausible_length(data, pos)
    if length is None:
        return None
    end = pos + HEADER_SIZE + length
    crc = HEADER.unpack_from(data, pos)[4]
    payload = data[pos + HEADER_SIZE : end]
    if zlib.crc32(payload) != crc:
        return None
    return Frame(pos, end, data[pos + 2], payload)


def resume_offset(data: bytes, pos: int) -> int | None:
    """Where reading resumes after the invalid frame at ``pos``: just past it when its header is
    intact and a valid frame follows (a damaged payload), else the next offset where a valid
    frame starts (a damaged header, a frame cut short in the middle, a zeroed block); ``None``
    when no valid frame follows. The length is trusted first so that a frame looking valid
    inside a damaged payload (a request body may hold any bytes) is not taken for a real one."""
    length = _plausible_length(data, pos)
    if length is not None and frame_at(data, pos + HEADER_SIZE + length) is not None:
        return pos + HEADER_SIZE + length
    candidate = data.find(MAGIC, pos + 1)
    while candidate >= 0:
        if frame_at(data, candidate) is not None:
            return candidate
        candidate = data.find(MAGIC, candidate + 1)
    return None


def _plausible_length(data: bytes, pos: int) -> int | None:
    """The payload length of a header at ``pos`` that could be a frame's: the magic, a known
    kind, a seal with no payload, and a payload that fits in ``data``."""
    if pos < 0 or len(data) - pos < HEADER_SIZE:
        return None
    magic, kind, _flags, length, _crc = HEADER.unpack_from(data, pos)
    if magic != MAGIC or kind not in (KIND_DATA, KIND_SEAL) or (kind == KIND_SEAL and length):
        return None
    if length > MAX_PAYLOAD or pos + HEADER_SIZE + length > len(data):
        return None
    return int(length)


def frame_length_at(data: bytes, pos: int) -> int | None:
    """Total length of the frame whose header starts at ``pos``, if the header is readable."""
    if len(data) - pos < HEADER_SIZE:
        return None
    magic, _kind, _flags, length, _crc = HEADER.unpack_from(data, pos)
    if magic != MAGIC:
        return None
    return HEADER_SIZE + int(length)


__all__ = ["HEADER_SIZE", "KIND_DATA", "KIND_SEAL", "SEAL_FRAME", "Frame", "ScanResult",
           "encode_frame", "frame_at", "frame_length_at", "resume_offset", "scan_frames"]  # fmt: skip
