"""Per-record transform functions for worker-process tests; the module imports slowly while a
flag file exists."""

from __future__ import annotations

import os
import time
from typing import Any

if os.path.exists(os.environ.get("HEADRACE_TEST_SLOW_START", "/nonexistent")):
    time.sleep(3.0)


def tag(record: dict[str, Any]) -> dict[str, Any]:
    """The record with ``tag`` naming it; sleeps for ever on ``hang``."""
    if record.get("hang"):
        time.sleep(60)
    return {**record, "tag": f"from-{record['n']}"}


def environment(record: dict[str, Any]) -> dict[str, Any]:
    """The record with the worker's environment under ``env``."""
    return {**record, "env": dict(os.environ)}
