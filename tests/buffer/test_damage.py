"""Damage on disk in the local buffer costs exactly the frames it touched: a reader skips each
damaged range of a sealed segment (resuming at the next valid frame), counts and logs it, and
keeps its bytes in the quarantine folder; a torn tail is still cut off at recovery."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgspec
import pytest

from headrace.buffer.local.frames import HEADER_SIZE, KIND_DATA, Frame, scan_frames
from headrace.buffer.local.quarantine import quarantine_path
from headrace.buffer.local.reader import PositionAck, SegmentReader
from headrace.buffer.local.replay import stored_requests
from headrace.buffer.local.segments import list_segments, recover_dead_writers
from support.buffer import fill, request

FRAMES = 9


@pytest.fixture
def segment(tmp_path: Path) -> Path:
    """One sealed segment holding FRAMES requests, the i-th holding the event ``{"n": i}``."""
    fill(tmp_path, [request([{"n": i, "pad": "x" * (40 + i)}]) for i in range(FRAMES)])
    (name,) = list_segments(tmp_path / "buffer")
    return tmp_path / "buffer" / name


def layout(path: Path) -> list[Frame]:
    """The data frames of the undamaged segment, in order."""
    return [f for f in scan_frames(path.read_bytes()).frames if f.kind == KIND_DATA]


def read_all(
    path: Path, sink: str = "a", max_bytes: int = 1 << 30
) -> tuple[set[int], SegmentReader]:
    """The events a fresh reader of ``sink`` delivers, polling until it reads nothing new."""
    reader = SegmentReader(path.parent, sink, {}, set())
    seen: list[int] = []
    while (polled := reader.poll(max_bytes)).advanced:
        for item in polled.items:
            seen += [event["n"] for event in msgspec.json.decode(item.request.body)]
    assert len(seen) == len(set(seen)), "an event was read twice"
    assert reader.pending_segments() == []  # the damaged segment was read to its seal
    return set(seen), reader


def damage(path: Path, start: int, new: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[start : start + len(new)] = new
    path.write_bytes(bytes(data))


def quarantined(path: Path, offset: int) -> bytes:
    return quarantine_path(path.parent, path.name, offset).read_bytes()


def test_a_flipped_payload_loses_only_its_frame(
    segment: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = layout(segment)
    middle = frames[4]
    flip = middle.start + HEADER_SIZE + 10
    original = segment.read_bytes()[flip : flip + 4]
    damage(segment, flip, bytes(b ^ 0xFF for b in original))
    with caplog.at_level(logging.WARNING, "headrace.buffer"):
        seen, reader = read_all(segment)
    assert set(range(FRAMES)) - seen == {4}
    assert quarantined(segment, middle.start) == segment.read_bytes()[middle.start : middle.end]
    assert (reader.skipped_frames, reader.corrupt) == (1, 1)
    assert reader.quarantined_bytes == middle.end - middle.start
    (line,) = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert segment.name in line and f"offset {middle.start}," in line
    assert f"{middle.end - middle.start} bytes" in line and "pad" not in line


@pytest.mark.parametrize(
    "where", [0, 2, 4], ids=["magic", "kind", "length"]
)  # the length made implausible: far past the end of the segment
def test_a_damaged_header_is_resynced_past(segment: Path, where: int) -> None:
    frames = layout(segment)
    hit = frames[3]
    damage(segment, hit.start + where, b"\xff\xff\xff\x7f"[: 2 if where < 4 else 4])
    seen, reader = read_all(segment)
    assert set(range(FRAMES)) - seen == {3}
    assert quarantined(segment, hit.start) == segment.read_bytes()[hit.start : hit.end]
    assert reader.skipped_frames == 1


def test_a_zeroed_block_loses_only_the_frames_it_covers(segment: Path) -> None:
    frames = layout(segment)
    start, end = frames[2].start + 20, frames[4].start + 30  # ends inside frame 4
    damage(segment, start, bytes(end - start))
    seen, reader = read_all(segment)
    assert set(range(FRAMES)) - seen == {2, 3, 4}
    region = segment.read_bytes()[frames[2].start : frames[4].end]
    assert quarantined(segment, frames[2].start) == region
    assert (reader.skipped_frames, reader.quarantined_bytes) == (1, len(region))


def test_a_header_without_its_body_in_the_middle(segment: Path) -> None:
    frames = layout(segment)
    hit = frames[5]
    data = segment.read_bytes()
    segment.write_bytes(data[: hit.start + HEADER_SIZE] + data[hit.end :])
    seen, _reader = read_all(segment)
    assert set(range(FRAMES)) - seen == {5}
    assert quarantined(segment, hit.start) == data[hit.start : hit.start + HEADER_SIZE]


def test_damage_in_two_places_is_skipped_twice(segment: Path) -> None:
    frames = layout(segment)
    for hit in (frames[1], frames[7]):
        damage(segment, hit.start + HEADER_SIZE + 3, b"\x00\x01")
    seen, reader = read_all(segment)
    assert set(range(FRAMES)) - seen == {1, 7}
    assert reader.skipped_frames == 2 and reader.corrupt == 1  # one segment, two ranges


def test_small_polls_read_past_damage_the_same(segment: Path) -> None:
    frames = layout(segment)
    damage(segment, frames[4].start, bytes(frames[5].end - frames[4].start))  # 4 and 5 zeroed
    seen, _reader = read_all(segment, max_bytes=1)  # one frame per chunk
    assert set(range(FRAMES)) - seen == {4, 5}


def test_truncation_is_a_torn_tail_cut_off_at_recovery(segment: Path) -> None:
    frames = layout(segment)
    cut = frames[6].start + 15
    segment.write_bytes(segment.read_bytes()[:cut])  # the seal and frames 6.. are gone
    (recovery,) = recover_dead_writers(segment.parent)
    assert recovery.torn_bytes == cut - frames[6].start
    seen, reader = read_all(segment)
    assert seen == set(range(6))
    assert reader.skipped_frames == 0  # a torn tail is cut off, not quarantined


def test_recovery_keeps_the_valid_frames_after_damage(segment: Path) -> None:
    """An unsealed segment (its writer died) damaged in the middle: recovery cuts only what
    follows the last valid frame; the reader skips the damage once the segment is sealed."""
    frames = layout(segment)
    data = bytearray(segment.read_bytes()[: frames[-1].end + 5])  # seal gone, tail torn
    data[frames[2].start + HEADER_SIZE + 1] ^= 0x55
    segment.write_bytes(bytes(data))
    (recovery,) = recover_dead_writers(segment.parent)
    assert recovery.torn_bytes == 5
    seen, _reader = read_all(segment)
    assert set(range(FRAMES)) - seen == {2}


def test_every_sink_skips_it_and_it_is_quarantined_once(segment: Path) -> None:
    frames = layout(segment)
    damage(segment, frames[4].start + HEADER_SIZE, b"\x00\x00\x00\x00")
    target = quarantine_path(segment.parent, segment.name, frames[4].start)
    seen_a, reader_a = read_all(segment, "a")
    made = target.stat()
    seen_b, reader_b = read_all(segment, "b")  # another sink, or the same one after a restart
    assert seen_a == seen_b == set(range(FRAMES)) - {4}
    assert reader_a.quarantined_bytes == frames[4].end - frames[4].start
    assert (reader_b.skipped_frames, reader_b.quarantined_bytes) == (1, 0)
    assert (target.stat().st_ino, target.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    assert list(target.parent.iterdir()) == [target]  # no private copy left behind


def test_a_position_saved_past_the_damage_stays_valid(segment: Path, tmp_path: Path) -> None:
    frames = layout(segment)
    damage(segment, frames[3].start + HEADER_SIZE + 2, b"\xde\xad")
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    reader = SegmentReader.for_sink(segment.parent, "a", conn)
    ack = reader.acknowledgement()
    first = reader.poll(frames[5].end - frames[0].start)  # frames 0-2, the damage, 4 and 5
    ack.include(first.progress)
    with conn:
        ack.record(conn)
    ack.settle()
    assert [msgspec.json.decode(i.request.body)[0]["n"] for i in first.items] == [0, 1, 2, 4, 5]
    again = SegmentReader.for_sink(segment.parent, "a", conn)  # after a restart
    rest = [msgspec.json.decode(i.request.body)[0]["n"] for i in again.poll(1 << 30).items]
    assert rest == [6, 7, 8]
    assert again.skipped_frames == 0
    assert isinstance(ack, PositionAck)


def test_replay_reads_past_damage(segment: Path) -> None:
    frames = layout(segment)
    damage(segment, frames[0].start, b"\x00" * HEADER_SIZE)
    replayed = [msgspec.json.decode(r.body)[0]["n"] for r in stored_requests(segment.parent)]
    assert replayed == list(range(1, FRAMES))
