"""Buffer backends compared: checksummed segment files vs SQLite (WAL, synchronous=FULL).

Method: the same frames (a stored single-event request, ~200 bytes, and a 100-event request,
~12 KB) are committed durably in groups of G frames, G = 1, 8, 64: one ``write`` +
``fdatasync`` per group for the segment file (what ``headrace.buffer.segments`` does), one
transaction of G inserts + COMMIT for SQLite in WAL mode with ``synchronous=FULL`` (the
alternative the design named). Each run is bounded by ``--seconds``; the figures are frames/s
and CPU µs per frame, and the ratio segment/SQLite from the same run. Both write to a temporary
directory on the same disk (``--dir`` to choose another).

    .venv/bin/python bench/buffer.py            # about 12 runs of 2 s
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from headrace.buffer.local.frames import encode_frame
from headrace.buffer.local.segments import SegmentWriter
from headrace.buffer.records import FORMAT_ARRAY, FORMAT_OBJECT, BufferedRequest
from headrace.ids import new_base_id

Commit = Callable[[list[bytes]], None]


def sample_frames() -> dict[str, bytes]:
    one = b'{"requestid":"r-000001","contextid":"c-1","callerid":"u-1","component":"button","action":"click","type":"ui"}'
    many = b"[" + b",".join([one] * 100) + b"]"
    base = new_base_id().to_bytes(16, "big")
    return {
        "single": encode_frame(BufferedRequest(0, base, "bench", "events", 1, FORMAT_OBJECT, one)),
        "batch100": encode_frame(
            BufferedRequest(0, base, "bench", "events", 100, FORMAT_ARRAY, many)
        ),
    }


def segment_backend(directory: Path) -> tuple[Commit, Callable[[], None]]:
    writer = SegmentWriter(directory, "bench", segment_bytes=1 << 40, segment_age=1e9)
    writer.open()
    return writer.append, writer.close


def sqlite_backend(directory: Path) -> tuple[Commit, Callable[[], None]]:
    conn = sqlite3.connect(directory / "buffer.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY, frame BLOB NOT NULL)")

    def commit(frames: list[bytes]) -> None:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO requests (frame) VALUES (?)", [(f,) for f in frames])
        conn.execute("COMMIT")

    return commit, conn.close


def measure(commit: Commit, frame: bytes, group: int, seconds: float) -> tuple[float, float]:
    """Frames per second and CPU µs per frame."""
    frames = [frame] * group
    done = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < seconds:
        commit(frames)
        done += group
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return done / wall, cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each run")
    parser.add_argument("--dir", type=Path, default=None, help="directory on the disk to test")
    args = parser.parse_args()
    print(
        f"{'frame':<9} {'group':>5} {'segment fr/s':>13} {'µs cpu':>7} {'sqlite fr/s':>12} {'µs cpu':>7} {'ratio':>6}"
    )
    for name, frame in sample_frames().items():
        for group in (1, 8, 64):
            results = []
            for backend in (segment_backend, sqlite_backend):
                with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
                    commit, close = backend(Path(tmp))
                    results.append(measure(commit, frame, group, args.seconds))
                    close()
            (seg_rate, seg_cpu), (sql_rate, sql_cpu) = results
            print(
                f"{name:<9} {group:>5} {seg_rate:>13,.0f} {seg_cpu:>7.1f} {sql_rate:>12,.0f} "
                f"{sql_cpu:>7.1f} {seg_rate / sql_rate:>5.2f}x"
            )
    print(f"\nmethod: {args.seconds:.1f} s per run, durable commit per group, pid {os.getpid()}")


if __name__ == "__main__":
    main()
