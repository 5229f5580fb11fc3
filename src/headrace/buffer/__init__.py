"""Where accepted requests wait for delivery, behind one interface (``base``): ingest commits to a
``BufferWriter``, delivery reads per sink from a ``BufferReader`` and acknowledges what the sink
committed. ``local`` (segment files, the default) and ``nats`` (a NATS JetStream stream, for many
machines) implement it; ``open_buffer`` picks the one the pipeline's ``buffer:`` names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from headrace.buffer.base import (
    Acknowledgement,
    Backlog,
    Buffer,
    BufferReader,
    BufferWriter,
    Polled,
    ReadItem,
)

if TYPE_CHECKING:
    from headrace.config.buffers import LocalBuffer as LocalBufferSettings
    from headrace.config.buffers import NatsBuffer as NatsBufferSettings


def open_buffer(settings: LocalBufferSettings | NatsBufferSettings, data_dir: Path) -> Buffer:
    """The buffer ``settings`` describe (the local one keeps its data under ``data_dir``)."""
    if settings.type == "nats":
        from headrace.buffer.nats import NatsBuffer

        return NatsBuffer(settings, data_dir)
    from headrace.buffer.local import LocalBuffer

    return LocalBuffer(settings, data_dir)


@contextmanager
def opened_buffer(
    settings: LocalBufferSettings | NatsBufferSettings, data_dir: Path
) -> Iterator[Buffer]:
    """``open_buffer`` for one piece of work (a replay, a requeue), closed after it."""
    buffer = open_buffer(settings, data_dir)
    try:
        yield buffer
    finally:
        buffer.close()


__all__ = [
    "Acknowledgement",
    "Backlog",
    "Buffer",
    "BufferReader",
    "BufferWriter",
    "Polled",
    "ReadItem",
    "open_buffer",
    "opened_buffer",
]
