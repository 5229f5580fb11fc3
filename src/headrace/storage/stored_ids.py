"""Which of a batch's event ids a sink already stored, for sinks that cannot ask their store.

A sink whose store has no index on event ids (objects in S3, where Parquet and NDJSON carry only
the events' own fields) keeps the ids of what it took in the state database, one row per
gathered chunk, committed in the same transaction as the chunk::

    stored_ids(sink, kind, stream, prefix, created_us, ids)   -- ids: an Arrow IPC stream (lz4)

``kind`` keeps apart what was stored as data and what was filed as failed (an error output): an
event replayed after its failure was fixed is new data.

Only events whose id came from outside (an ``id_field``, a replay) are looked up, as the lake
does: against the rows of the partitions they go to and every row of the last hour (a client's
retry lands in the hour it is sent). Rows older than the sink's ``dedupe_window`` are deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

STORED_IDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS stored_ids (
    sink TEXT NOT NULL, kind TEXT NOT NULL, stream TEXT NOT NULL, prefix TEXT NOT NULL,
    created_us INTEGER NOT NULL, ids BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS stored_ids_by_prefix ON stored_ids (sink, kind, stream, prefix);
CREATE INDEX IF NOT EXISTS stored_ids_by_age ON stored_ids (sink, created_us);
"""
RECENT_US = 3600 * 1_000_000


def string_array(values: Iterable[str]) -> Any:
    """An Arrow string array of ``values``."""
    import pyarrow as pa

    return pa.array(list(values), pa.string())


def ids_among(ids: Any, candidates: Any) -> list[str]:
    """The values of the Arrow array ``ids`` that are in the Arrow array ``candidates``."""
    import pyarrow.compute as pc

    hits: list[str] = ids.filter(pc.is_in(ids, value_set=candidates)).to_pylist()
    return hits


def pack_ids(ids: list[str]) -> bytes:
    """``ids`` as a compact blob (consecutive generated ids compress to a few bytes each)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    batch = pa.record_batch([string_array(ids)], names=["id"])
    sink = pa.BufferOutputStream()
    with ipc.new_stream(
        sink, batch.schema, options=ipc.IpcWriteOptions(compression="lz4")
    ) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def _unpack(blob: bytes) -> Any:
    import pyarrow.ipc as ipc

    return ipc.open_stream(blob).read_all().column("id")


def record_ids(
    conn: sqlite3.Connection,
    sink: str,
    kind: str,
    stream: str,
    prefix: str,
    ids: list[str],
    now_us: int,
) -> None:
    """Remember that ``sink`` took ``ids`` into ``prefix``; the caller owns the transaction."""
    conn.execute(
        "INSERT INTO stored_ids (sink, kind, stream, prefix, created_us, ids) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (sink, kind, stream, prefix, now_us, pack_ids(ids)),
    )


def already_stored(
    conn: sqlite3.Connection,
    sink: str,
    kind: str,
    stream: str,
    prefixes: Iterable[str],
    candidates: set[str],
    now_us: int,
) -> set[str]:
    """Those of ``candidates`` that ``sink`` took before as ``kind`` into one of ``prefixes``
    or lately."""
    if not candidates:
        return set()
    prefixes = list(prefixes)
    marks = ",".join("?" * len(prefixes))
    rows = conn.execute(
        "SELECT ids FROM stored_ids WHERE sink = ? AND kind = ? AND stream = ? AND "
        f"(prefix IN ({marks}) OR created_us >= ?)",
        (sink, kind, stream, *prefixes, now_us - RECENT_US),
    )
    wanted = string_array(candidates)
    found: set[str] = set()
    for (blob,) in rows:
        found.update(ids_among(_unpack(blob), wanted))
        if len(found) == len(candidates):
            break
    return found


def forget_ids(conn: sqlite3.Connection, sink: str, older_than_us: int) -> int:
    """Delete the rows of ``sink`` made before ``older_than_us``; returns how many."""
    return conn.execute(
        "DELETE FROM stored_ids WHERE sink = ? AND created_us < ?", (sink, older_than_us)
    ).rowcount


__all__ = [
    "STORED_IDS_SCHEMA",
    "already_stored",
    "forget_ids",
    "ids_among",
    "pack_ids",
    "record_ids",
    "string_array",
]
