"""Transforms: what changes events between the buffer and a sink. How to write one
(``docs/extending.md`` has a whole example):

1. Write its config model, a ``headrace.config.base.TransformConfig`` with ``type: Literal[...]``.
2. Write a class with the ``Transform`` protocol below, taking ``(transform_id, config)``, and
   register both (``headrace.registry.register("transform", ...)``): a built-in is a folder of
   this package, a plugin declares a ``headrace.transforms`` entry point.
3. ``apply`` takes the events of one delivery batch and returns a ``TransformResult``: the events
   that go on (changed or not), the ones that failed (they go to the sink's dead-letter store
   with the reason) and how many were dropped on purpose (a drop is a success). An exception
   means "try the batch again later" (the runtime retries with backoff).
4. State that must survive a restart is written by ``on_commit`` callables, which the runtime
   runs in the transaction that saves the sink's position once the sink has the batch, with the
   ids of the events that went to the dead-letter store instead; so an event that was never
   delivered is never remembered as seen (and a dead letter replayed later is not a duplicate).

A transform may also have ``counters() -> dict[str, float]``: running totals the runtime
publishes after each batch as ``headrace_<name>_total{sink, transform}`` metrics; and
``takes_raw = True`` if it can take events carrying bytes instead of a JSON object
(``Event.raw``, what a Firehose function may return), which others are refused.

Each sink gets its own instance of every transform on its way (see ``graph``), so sinks fed
through the same transform never share a position, a failure or a dedupe window.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from headrace.config.base import TransformConfig
from headrace.registry import components
from headrace.types import Event, FailedRecord

CommitHook = Callable[[sqlite3.Connection, set[str]], None]
"""Saves a transform's state with the sink's position; gets the ids of the batch's events that
went to the dead-letter store (after this transform, or refused by the sink)."""


@dataclass
class TransformResult:
    """What a transform did with a batch."""

    events: list[Event]
    failed: list[FailedRecord] = field(default_factory=list)
    dropped: int = 0
    on_commit: list[CommitHook] = field(default_factory=list)


@dataclass(frozen=True)
class TransformContext:
    """Where a transform runs: for which sink, with which state database."""

    sink_id: str
    state_path: Path


class Transform(Protocol):
    """Changes batches of events on their way to one sink."""

    id: str

    def open(self, context: TransformContext) -> None:
        """Start workers, connect, load state; raise if the transform cannot run."""

    def apply(self, events: list[Event]) -> TransformResult:
        """Transform one batch; see the module docstring for the contract."""

    def close(self) -> None:
        """Stop workers and release connections."""


def build_transform(transform_id: str, config: TransformConfig) -> Transform:
    """The transform object for one configured transform (not yet opened)."""
    implementation = components().get("transform", config.type).load()
    transform: Transform = implementation(transform_id, config)
    return transform


__all__ = [
    "CommitHook",
    "Transform",
    "TransformContext",
    "TransformResult",
    "build_transform",
]
