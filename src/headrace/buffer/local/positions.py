"""How far each sink has taken each segment of the local buffer, in the state database::

    positions(sink, segment, offset, done)   -- done: read to its seal

Written in the transaction that commits a batch (the sink's own, when it keeps its data in the
state database too), so a batch the sink has is never delivered again.
"""

from __future__ import annotations

import sqlite3

POSITIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    sink TEXT NOT NULL, segment TEXT NOT NULL, offset INTEGER NOT NULL, done INTEGER NOT NULL,
    PRIMARY KEY (sink, segment)
);
"""


def save_positions(
    conn: sqlite3.Connection, sink: str, positions: dict[str, int], finished: set[str]
) -> None:
    """Record ``sink``'s offsets (and the segments it finished); the caller owns the transaction."""
    conn.executemany(
        "INSERT INTO positions (sink, segment, offset, done) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (sink, segment) DO UPDATE SET offset = excluded.offset, "
        "done = excluded.done",
        [(sink, seg, off, int(seg in finished)) for seg, off in positions.items()],
    )


def load_positions(conn: sqlite3.Connection, sink: str) -> tuple[dict[str, int], set[str]]:
    """A sink's saved offsets and the segments it has finished."""
    positions: dict[str, int] = {}
    done: set[str] = set()
    if not _exists(conn):  # no reader has started yet
        return positions, done
    for segment, offset, finished in conn.execute(
        "SELECT segment, offset, done FROM positions WHERE sink = ?", (sink,)
    ):
        positions[segment] = offset
        if finished:
            done.add(segment)
    return positions, done


def segments_finished_by_all(conn: sqlite3.Connection, sinks: list[str]) -> set[str]:
    """Segments every one of ``sinks`` has read to the end."""
    if not sinks or not _exists(conn):
        return set()
    marks = ",".join("?" * len(sinks))
    rows = conn.execute(
        f"SELECT segment FROM positions WHERE done = 1 AND sink IN ({marks}) "
        "GROUP BY segment HAVING COUNT(DISTINCT sink) = ?",
        (*sinks, len(sinks)),
    )
    return {row[0] for row in rows}


def forget_segment(conn: sqlite3.Connection, segment: str) -> None:
    """Drop the positions of a removed segment."""
    conn.execute("DELETE FROM positions WHERE segment = ?", (segment,))


def _exists(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'positions'"
    ).fetchone()
    return found is not None
