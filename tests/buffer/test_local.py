from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from headrace.buffer.local.frames import KIND_DATA, KIND_SEAL, SEAL_FRAME, encode_frame, scan_frames
from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.local.segments import (
    SegmentWriter,
    is_sealed,
    list_segments,
    recover_dead_writers,
    recover_segment,
)
from headrace.buffer.local.writer import CapacityGuard, LocalWriter
from headrace.buffer.records import (
    FORMAT_ARRAY,
    FORMAT_NDJSON,
    FORMAT_OBJECT,
    BufferedRequest,
    expand_events,
)
from headrace.errors import BufferFull
from headrace.ids import event_ids, new_base_id


def request(
    body: bytes = b'{"a":1}', fmt: int = FORMAT_OBJECT, count: int = 1, **kw: object
) -> BufferedRequest:
    base = new_base_id()
    args: dict[str, object] = {"stream": "s", "source": "src"} | kw
    return BufferedRequest(
        1_700_000_000_000_000, base.to_bytes(16, "big"), count=count, fmt=fmt, body=body, **args
    )  # type: ignore[arg-type]


def writer(directory: Path, name: str = "w0", **kw: float) -> SegmentWriter:
    settings = {"segment_bytes": 1 << 20, "segment_age": 3600.0} | kw
    return SegmentWriter(
        directory,
        name,
        segment_bytes=int(settings["segment_bytes"]),
        segment_age=settings["segment_age"],
    )


def test_frames_round_trip_and_events_get_derived_ids() -> None:
    stored = request(b'[{"a":1},{"a":2}]', FORMAT_ARRAY, 2)
    data = encode_frame(stored) + SEAL_FRAME
    result = scan_frames(data)
    assert result.stop == "end"
    assert [f.kind for f in result.frames] == [KIND_DATA, KIND_SEAL]
    assert result.frames[0].request() == stored
    events = expand_events(result.frames[0].request())
    assert [e.data for e in events] == [{"a": 1}, {"a": 2}]
    assert [e.id for e in events] == event_ids(int.from_bytes(stored.base_id, "big"), 2)
    assert not any(e.may_repeat for e in events)


def test_ndjson_and_explicit_ids_expand() -> None:
    stored = request(b'{"a":1}\n\n{"a":2}\n', FORMAT_NDJSON, 2, ids=["x", "y"])
    events = expand_events(stored)
    assert [(e.id, e.data) for e in events] == [("x", {"a": 1}), ("y", {"a": 2})]
    assert all(e.may_repeat for e in events)


def test_scan_stops_at_a_cut_frame_and_at_a_bad_checksum() -> None:
    one, two = encode_frame(request()), encode_frame(request())
    assert scan_frames(one + two[:-3]).stop == "partial"
    assert scan_frames(one + two[:-3]).end == len(one)
    damaged = bytearray(one + two)
    damaged[-1] ^= 0xFF
    result = scan_frames(bytes(damaged))
    assert (result.stop, len(result.frames), result.end) == ("corrupt", 1, len(one))


def test_close_seals_and_empty_segments_are_removed(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.open()
    w.append([encode_frame(request())])
    w.close()
    (name,) = list_segments(tmp_path)
    assert is_sealed(tmp_path / name)
    empty = writer(tmp_path, "w1")
    empty.open()
    empty.close()
    assert list_segments(tmp_path) == [name]


@pytest.mark.parametrize("tail", [b"HR\x01", encode_frame(request())[:-5], b"garbage-after-crash"])
def test_recovery_cuts_a_torn_tail_and_seals(tmp_path: Path, tail: bytes) -> None:
    good = encode_frame(request()) + encode_frame(request())
    path = tmp_path / "0000000000000001-w0.seg"
    path.write_bytes(good + tail)
    recovery = recover_segment(path)
    assert recovery is not None and recovery.sealed and recovery.torn_bytes == len(tail)
    assert path.read_bytes() == good + SEAL_FRAME
    assert recover_segment(path) == type(recovery)(path.name, 0, False)  # idempotent


def test_recovery_leaves_a_live_writers_segment_alone(tmp_path: Path) -> None:
    live = writer(tmp_path)
    live.open()
    live.append([encode_frame(request())])
    assert recover_dead_writers(tmp_path) == []
    assert not is_sealed(tmp_path / live.name)
    live.close()


def test_a_restarted_writer_seals_its_predecessors_segment(tmp_path: Path) -> None:
    first = writer(tmp_path)
    first.open()
    first.append([encode_frame(request())])
    os.close(first._fd)  # type: ignore[arg-type]  # the process died: lock gone, no seal
    second = writer(tmp_path)
    second.open()
    assert is_sealed(tmp_path / first.name)
    assert second.name != first.name
    second.close()


def test_segments_roll_by_size(tmp_path: Path) -> None:
    w = writer(tmp_path, segment_bytes=1000)
    w.open()
    for _ in range(10):
        w.append([encode_frame(request(b'{"pad":"' + b"x" * 300 + b'"}'))])
    w.close()
    names = list_segments(tmp_path)
    assert len(names) > 3
    assert all(is_sealed(tmp_path / n) for n in names)


def test_reader_reads_across_segments_and_knows_when_one_is_finished(tmp_path: Path) -> None:
    w = writer(tmp_path, segment_bytes=200)
    w.open()
    for i in range(6):
        w.append([encode_frame(request(b'{"i":%d}' % i))])
    reader = SegmentReader(tmp_path, "t", {}, set())
    polled = reader.poll(1 << 20)
    items, finished = polled.items, polled.progress.finished
    assert [expand_events(i.request)[0].data["i"] for i in items] == list(range(6))
    assert finished and all(is_sealed(tmp_path / n) for n in finished)
    w.close()
    again = SegmentReader(tmp_path, "t", reader.positions, reader.done)
    assert again.poll(1 << 20).items == []


def test_reader_takes_a_frame_larger_than_its_budget(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.open()
    w.append([encode_frame(request(b'{"big":"' + b"x" * 10_000 + b'"}'))])
    items = SegmentReader(tmp_path, "t", {}, set()).poll(100).items
    assert len(items) == 1
    w.close()


@pytest.mark.anyio
async def test_concurrent_commits_share_fsyncs(tmp_path: Path) -> None:
    guard = CapacityGuard(tmp_path, max_bytes=1 << 30, min_free_bytes=0)
    committer = LocalWriter(writer(tmp_path), guard)
    committer.start()
    await asyncio.gather(*(committer.commit(request()) for _ in range(500)))
    committer.stop_blocking()
    assert committer.frames_committed == 500
    assert committer.commits < 500  # many requests rode on one fsync
    items = SegmentReader(tmp_path, "t", {}, set()).poll(1 << 24).items
    assert len(items) == 500


@pytest.mark.anyio
async def test_a_full_buffer_refuses_before_writing(tmp_path: Path) -> None:
    guard = CapacityGuard(tmp_path, max_bytes=100, min_free_bytes=0)
    committer = LocalWriter(writer(tmp_path), guard, refresh_every=0.01)
    committer.start()
    await committer.commit(request(b'{"pad":"' + b"x" * 200 + b'"}'))
    await asyncio.sleep(0.1)  # the guard measures again
    with pytest.raises(BufferFull):
        await committer.commit(request())
    committer.stop_blocking()
    items = SegmentReader(tmp_path, "t", {}, set()).poll(1 << 24).items
    assert len(items) == 1


def test_ids_are_unique_and_time_ordered_across_many_requests() -> None:
    import uuid

    bases = [new_base_id(1_700_000_000_000 + n // 1000) for n in range(5000)]
    assert len(set(bases)) == 5000
    ids = [event_ids(b, 3) for b in bases]
    assert all(uuid.UUID(i).version == 7 for group in ids for i in group)
    ms = [int(group[0].replace("-", "")[:12], 16) for group in ids]
    assert ms == sorted(ms)


def test_a_failed_fsync_abandons_the_segment_and_loses_no_stored_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from headrace.buffer.local import segments

    w = writer(tmp_path)
    w.open()
    w.append([encode_frame(request(b'{"n":1}'))])
    first = w.name
    reader = SegmentReader(tmp_path, "t", {}, set())
    real = segments.os.fdatasync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments.os, "fdatasync", full_disk)
    with pytest.raises(BufferFull, match=r"disk .* full"):
        w.append([encode_frame(request(b'{"n":2}'))])
    monkeypatch.setattr(segments.os, "fdatasync", real)
    seen = [e.data["n"] for item in reader.poll(1 << 20).items for e in expand_events(item.request)]
    w.append([encode_frame(request(b'{"n":3}'))])
    assert w.name != first  # the next append started a new segment
    recover_dead_writers(tmp_path)  # seals the abandoned one (its writer released it)
    assert is_sealed(tmp_path / first)
    seen += [
        e.data["n"] for item in reader.poll(1 << 20).items for e in expand_events(item.request)
    ]
    assert seen[0] == 1 and seen[-1] == 3  # 2 may be delivered (at least once), nothing is lost
    assert reader.corrupt == 0
    w.close()


def test_a_failed_roll_does_not_fail_frames_already_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer(tmp_path, segment_bytes=10)
    w.open()
    real_start = w._start_segment

    def cannot_create() -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(w, "_start_segment", cannot_create)
    w.append([encode_frame(request(b'{"n":1}'))])  # durable; the roll after it fails quietly
    monkeypatch.setattr(w, "_start_segment", real_start)
    w.append([encode_frame(request(b'{"n":2}'))])
    w.close()
    items = SegmentReader(tmp_path, "t", {}, set()).poll(1 << 20).items
    assert [expand_events(i.request)[0].data["n"] for i in items] == [1, 2]


def test_an_unnamed_segment_left_by_a_crash_is_removed(tmp_path: Path) -> None:
    (tmp_path / ".0000000000000001-w0.seg.new").write_bytes(b"")
    recover_dead_writers(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_ndjson_splits_on_newlines_only_as_ingest_does() -> None:
    events = expand_events(request(b'{"a":\r1}\r\n{"b":2}\n\n', FORMAT_NDJSON, 2))
    assert [e.data for e in events] == [{"a": 1}, {"b": 2}]
