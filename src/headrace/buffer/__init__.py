"""Where accepted requests wait for delivery, behind one interface (``base``): ingest commits to a
``BufferWriter``, delivery reads per sink from a ``BufferReader`` and acknowledges what the sink
committed. ``local`` (segment files, the default) is the implementation here; ``open_buffer`` picks
the one the pipeline's ``buffer:`` names."""

from __future__ import annotations

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
    from headrace.config.models import LocalBuffer as LocalBufferSettings


def open_buffer(settings: LocalBufferSettings, data_dir: Path) -> Buffer:
    """The buffer ``settings`` describe, keeping its data under ``data_dir``."""
    from headrace.buffer.local import LocalBuffer

    return LocalBuffer(settings, data_dir)


__all__ = [
    "Acknowledgement",
    "Backlog",
    "Buffer",
    "BufferReader",
    "BufferWriter",
    "Polled",
    "ReadItem",
    "open_buffer",
]
