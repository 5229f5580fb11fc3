"""What a sink is. How to write one (``docs/extending.md`` has a whole example):

1. Write its config model, a ``headrace.config.base.SinkConfig`` with ``type: Literal["<name>"]``.
2. Write a class with the ``Sink`` protocol below, taking ``(sink_id, config, data_dir)`` and
   importing heavy drivers inside its methods so that reading a pipeline file stays fast.
   Register both (``headrace.registry.register("sink", ...)``): a built-in is a module or folder
   under ``headrace/sinks/``, a plugin declares a ``headrace.sinks`` entry point.
3. ``write`` stores a batch or raises: ``TransientSinkError`` when a retry may help (connection
   lost, disk full), ``TerminalSinkError`` when none can; events refused one by one are returned
   in ``WriteResult.failed`` and go to the dead-letter store. Redelivery of an event id the sink
   already holds must not add a row (the runtime delivers at least once).
4. A sink that keeps its data where the state database is (``commits_checkpoint = True``) saves
   ``checkpoint`` in the same transaction as its data; others leave that to the runtime.
5. ``capabilities`` says what the sink can do, and the same set is registered: ``APPEND``,
   ``MERGE`` (a later event with the same key replaces the stored one), ``REPLACE``; ``READ``: GET,
   export and the dashboard can read it back; ``RAW``: it is handed events a Firehose function
   returned as bytes that are not JSON (``Event.raw``) and writes them as they are (without it,
   such events are refused before it sees them). ``validate`` refuses a ``write_mode`` the
   registered capabilities lack.
6. Optionally, ``write_requests(requests, checkpoint)`` stores a batch from the buffer's stored
   requests as they are (``BufferedRequest``: bodies as they arrived), for a sink that can parse
   them faster than a dict per event (``headrace.sinks.arrow_bodies``). It is used only when the
   sink has no transforms; it returns a ``WriteResult`` like ``write``, or ``None`` when it
   stored nothing and the batch should go through ``write`` as decoded events.
"""

from __future__ import annotations

from typing import Protocol

from headrace.storage.state import Checkpoint
from headrace.types import Event, WriteResult

APPEND = "append"
REPLACE = "replace"
MERGE = "merge"
RAW = "raw"
"""Writes what a Firehose function returned as it is when it is not a JSON object (a line)."""
READ = "read"
"""Answers GET (``/v1/streams/.../events``, a source's ``read``), export and the dashboard."""


class Sink(Protocol):
    """A destination for batches of events."""

    id: str
    capabilities: frozenset[str]
    commits_checkpoint: bool

    def open(self) -> None:
        """Connect and check the destination is usable."""

    def write(self, events: list[Event], checkpoint: Checkpoint) -> WriteResult:
        """Store ``events``; see the module docstring for the error contract."""

    def health(self) -> str | None:
        """``None`` when healthy, else why not."""

    def maintain(self) -> None:
        """Periodic background work (compaction, clean-up); called from its own thread."""

    def close(self) -> None:
        """Release connections and files."""
