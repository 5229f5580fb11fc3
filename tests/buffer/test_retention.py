"""Retention of the local buffer: only sealed segments every sink finished are removed, when
past the retention or when the buffer nears its limit."""

from __future__ import annotations

import os
from pathlib import Path

from headrace.buffer.local.retention import remove_expired_segments
from headrace.buffer.local.segments import list_segments
from headrace.storage import state
from support.buffer import checkpoint, fill, request


def test_retention_removes_only_sealed_delivered_expired_segments(data_dir: Path) -> None:
    buffer_dir = data_dir / "buffer"
    fill(data_dir, [request([{"n": 1}])])
    fill(data_dir, [request([{"n": 2}])])
    old, new = list_segments(buffer_dir)
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    for name in (old, new):
        os.utime(buffer_dir / name, (0, 0))  # both long past retention
    checkpoint("a", {old: 1, new: 1}, finished={old, new}).apply(conn)
    checkpoint("b", {old: 1}, finished={old}).apply(conn)  # sink b has not finished the new one
    assert remove_expired_segments(buffer_dir, conn, ["a", "b"], retention=3600) == [old]
    assert list_segments(buffer_dir) == [new]
    assert remove_expired_segments(buffer_dir, conn, ["a", "b"], retention=3600) == []


def test_a_nearly_full_buffer_gives_up_delivered_segments_before_their_retention(
    data_dir: Path,
) -> None:
    buffer_dir = data_dir / "buffer"
    for n in range(4):
        fill(data_dir, [request([{"n": n, "pad": "x" * 400}])])
    names = list_segments(buffer_dir)
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    checkpoint("a", dict.fromkeys(names[:3], 1), finished=set(names[:3])).apply(
        conn
    )  # last one undelivered
    total = sum((buffer_dir / n).stat().st_size for n in names)
    removed = remove_expired_segments(buffer_dir, conn, ["a"], retention=3600, max_bytes=total)
    assert removed == names[:1]  # just enough to get under 80%, oldest first
    assert (
        remove_expired_segments(buffer_dir, conn, ["a"], retention=3600, max_bytes=1) == names[1:3]
    )
    assert list_segments(buffer_dir) == names[3:]  # undelivered data is never removed
