"""How long the local buffer keeps what every sink has taken: ``retention``, less when full."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path

from headrace.buffer.local.positions import forget_segment, segments_finished_by_all
from headrace.buffer.local.segments import is_sealed, list_segments

log = logging.getLogger("headrace.buffer")


def remove_expired_segments(
    buffer_dir: Path,
    conn: sqlite3.Connection,
    sinks: list[str],
    retention: float,
    max_bytes: int | None = None,
) -> list[str]:
    """Delete sealed segments every sink has delivered once they are older than ``retention``;
    past 80% of ``max_bytes``, the oldest delivered ones go early (retention yields to room for
    new events, so a full buffer always means an undelivered backlog)."""
    finished = segments_finished_by_all(conn, sinks)
    cutoff = time.time() - retention
    sizes = {}
    for name in list_segments(buffer_dir):
        with contextlib.suppress(FileNotFoundError):
            sizes[name] = (buffer_dir / name).stat().st_size
    excess = sum(sizes.values()) - int(0.8 * max_bytes) if max_bytes else 0
    removed = []
    for name in sizes:  # oldest first
        path = buffer_dir / name
        if name not in finished or not is_sealed(path):
            continue
        try:
            expired = path.stat().st_mtime <= cutoff
            if not expired and excess <= 0:
                continue
            path.unlink()
        except FileNotFoundError:
            pass
        if not expired:
            log.warning(
                "buffer over 80%% of its limit: removed delivered %s before its retention", name
            )
        excess -= sizes[name]
        forget_segment(conn, name)
        removed.append(name)
    return removed


__all__ = ["remove_expired_segments"]
