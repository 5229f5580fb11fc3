"""Keeping the bytes of damaged frames for an operator to look at.

A reader that skips a damaged range of a segment copies it to
``<data>/buffer/quarantine/<segment name without .seg>-<offset>.bin``. Every sink's reader
meets the same damage, and again after a restart, so the copy is made once: written under a
private name, then hard-linked into place (the link fails when another reader made it first).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from headrace.buffer.local.segments import SUFFIX

FOLDER = "quarantine"


def quarantine_path(buffer_dir: Path, segment: str, offset: int) -> Path:
    """Where the damaged bytes at ``offset`` of ``segment`` are kept."""
    return buffer_dir / FOLDER / f"{segment.removesuffix(SUFFIX)}-{offset}.bin"


def quarantine(buffer_dir: Path, segment: str, offset: int, data: bytes) -> bool:
    """Keep ``data`` (the damaged bytes at ``offset`` of ``segment``); ``True`` when this call
    made the copy, ``False`` when it already existed."""
    final = quarantine_path(buffer_dir, segment, offset)
    if final.exists():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    private = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(private, final)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            private.unlink()
    return True


__all__ = ["quarantine", "quarantine_path"]
