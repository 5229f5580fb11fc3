"""What a data directory's state database (``<data>/state.db``) holds for one sink: the saved
buffer positions and the dead letters. Read-only; an absent database holds nothing."""

from __future__ import annotations

from pathlib import Path

from headrace.buffer.local.positions import load_positions
from headrace.storage import state


def _database(data_dir: Path) -> Path | None:
    path = data_dir / "state.db"
    return path if path.exists() else None


def saved_positions(data_dir: Path, sink: str) -> tuple[dict[str, int], set[str]]:
    """The sink's saved offsets by segment and the segments it finished."""
    path = _database(data_dir)
    if path is None:
        return {}, set()
    conn = state.connect(path, readonly=True)
    try:
        return load_positions(conn, sink)
    finally:
        conn.close()


def dead_letters(data_dir: Path, sink: str) -> list[state.DeadLetter]:
    """The sink's pending dead letters, oldest first."""
    path = _database(data_dir)
    if path is None:
        return []
    conn = state.connect(path, readonly=True)
    try:
        return state.list_dead_letters(conn, sink=sink, limit=10_000)
    finally:
        conn.close()


__all__ = ["dead_letters", "saved_positions"]
