"""The buffer as the rest of headrace sees it: ingest commits accepted requests to a
``BufferWriter``; delivery reads them for one sink from a ``BufferReader`` and acknowledges what
the sink committed; operators replay a time range or send requests back (``Buffer``).

Nothing outside ``headrace.buffer`` knows how a buffer keeps its data (segment files and byte
offsets for the local buffer, streams and sequence numbers for a distributed one). What delivery
holds between reading and acknowledging is opaque to it:

- every ``poll`` returns the requests read and a ``progress`` token for all it read (requests for
  other sinks included, which must be acknowledged too);
- a batch gathers tokens into one ``Acknowledgement`` (``reader.acknowledgement()``), whose
  ``record(conn)`` runs inside the state-database transaction that commits the batch (the sink's
  own when it keeps its data there, so data and position commit together) and whose ``settle()``
  runs after that transaction committed. A buffer that keeps positions in the state database
  does its work in ``record``; one whose acknowledgements are per message sends them in
  ``settle`` (a crash between the two redelivers the batch, which sinks drop by event id).

The unit of storage is one accepted request (``BufferedRequest``): its body as it arrived, the
base of its event ids, its stream and source, and which sinks a replay is for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from headrace.buffer.records import BufferedRequest


@dataclass(frozen=True)
class ReadItem:
    """One stored request as a reader hands it out."""

    request: BufferedRequest
    size: int
    """Bytes it takes in the buffer (what batch limits count)."""
    where: str
    """Where it is stored, for people (an id for an undecodable request's dead letter)."""
    deliveries: int = 1
    """How many times it has been handed out (more than 1: a worker died, or did not
    acknowledge in time)."""
    final: bool = False
    """Delivered as many times as the buffer allows: its events go to the dead letters
    (``redelivered_too_often``) instead of the sink."""


@dataclass(frozen=True)
class Polled:
    """What one ``poll`` read."""

    items: list[ReadItem]
    progress: Any
    """Everything read (opaque): give it to the batch's ``Acknowledgement.include``."""
    advanced: bool
    """Whether it read anything at all (also data for other sinks, or an end of data)."""


class Acknowledgement(Protocol):
    """What committing one delivery batch acknowledges to the buffer."""

    @property
    def empty(self) -> bool:
        """Whether nothing has been read into it yet."""

    def include(self, progress: Any) -> None:
        """Add a poll's progress."""

    def record(self, conn: sqlite3.Connection) -> None:
        """Save it in the caller's state-database transaction (which the caller commits)."""

    def settle(self) -> None:
        """Called once that transaction committed."""


@dataclass(frozen=True)
class Backlog:
    """What a sink has not acknowledged yet."""

    bytes: int
    oldest_received_at_us: int | None
    messages: int | None = None
    """Stored requests not yet acknowledged, where the buffer counts them."""


class BufferReader(Protocol):
    """Requests in order for one sink, after what it acknowledged."""

    corrupt: int
    """Damaged stored data found and skipped so far (counted, logged, kept for inspection)."""

    def poll(self, max_bytes: int, max_events: int) -> Polled:
        """The next requests, about ``max_bytes`` and at most ``max_events`` events (one request
        always fits); an empty poll means nothing new right now."""

    def acknowledgement(self) -> Acknowledgement:
        """An empty acknowledgement for a new batch."""

    def backlog(self) -> Backlog:
        """What is stored after the acknowledged positions (safe to call from another thread)."""

    def close(self) -> None:
        """Release what the reader holds."""


class BufferWriter(Protocol):
    """Durable appends of accepted requests, from an asyncio event loop."""

    commits: int
    """Durable writes so far (one fsync each for the local buffer; many requests share one)."""
    frames_committed: int
    """Requests committed so far."""

    def start(self) -> int:
        """Open (in the running event loop), first making this writer's earlier data readable;
        returns the torn tails cut off (for ``headrace_buffer_torn_tails_total``)."""

    async def commit(self, request: BufferedRequest) -> None:
        """Return once ``request`` is durable; raise ``BufferFull`` if it cannot be taken."""

    def problem(self) -> str | None:
        """Why commits fail or would be refused right now (full, unwritable), or ``None``."""

    def stored_bytes(self) -> int:
        """Bytes the buffer holds (for the ``headrace_buffer_bytes`` gauge)."""

    async def stop(self) -> None:
        """Commit what is pending and release the writer."""


class Buffer(Protocol):
    """One configured buffer, as the processes of a deployment open it."""

    def writer(self, name: str) -> BufferWriter:
        """The writer of one ingest worker (``name`` is unique among the running workers)."""

    def reader(self, sink: str, conn: sqlite3.Connection, sources: list[str]) -> BufferReader:
        """The reader of one sink, starting after what it acknowledged (``conn``: the state
        database, where acknowledgements are recorded; ``sources``: the sources it reads, so a
        buffer that can filter by source hands out only theirs)."""

    def recover(self) -> int:
        """Make what writers that died left readable, cutting off torn tails (each logged);
        returns how many were cut (the ``headrace_buffer_torn_tails_total`` counter)."""

    def expire(self, conn: sqlite3.Connection, sinks: list[str]) -> int:
        """Remove data every one of ``sinks`` acknowledged, past the retention; returns how many
        units were removed."""

    def replay(
        self,
        stream: str,
        since_us: int,
        until_us: int,
        sinks: list[str] | None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Send the stream's requests received in ``[since, until)`` again (to ``sinks``, or all
        that take them); returns the events queued."""

    def requeue(self, requests: Iterable[BufferedRequest]) -> int:
        """Append ``requests`` (replayed dead letters, bad rows that now pass); returns how many
        events they hold."""

    def delivery_state(self, sinks: list[str]) -> dict[str, Any] | None:
        """What the buffer itself knows of each sink's delivery across every machine delivering
        to it (JetStream's consumers: pending, unacknowledged, redelivered), or ``None`` when
        delivery state lives in this data directory; ``BufferUnavailable`` when it cannot say."""

    def close(self) -> None:
        """Release the connections the buffer opened for this process (its readers close on
        their own)."""


__all__ = [
    "Acknowledgement",
    "Backlog",
    "Buffer",
    "BufferReader",
    "BufferWriter",
    "Polled",
    "ReadItem",
]
