"""headrace: a self-hosted event and webhook ingestion pipeline.

The public Python surface is what ``__all__`` lists: the clients that send events
(``Client``, ``AsyncClient``), the event types delivery and transforms work with (``Event``,
``FailedRecord``, ``WriteResult``) and the error tree (``HeadraceError`` and its branches).
Everything else is reached through its module. Names are imported on first use, so
``import headrace`` (and with it every command and worker) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AsyncClient": "headrace.client",
    "Client": "headrace.client",
    "QueueFull": "headrace.client",
    "Event": "headrace.types",
    "FailedRecord": "headrace.types",
    "ProcessingFailure": "headrace.types",
    "WriteResult": "headrace.types",
    "HeadraceError": "headrace.errors",
    "ConfigError": "headrace.errors",
    "ConfigProblem": "headrace.errors",
    "RequestRejected": "headrace.errors",
    "BufferFull": "headrace.errors",
    "SinkError": "headrace.errors",
    "TransientSinkError": "headrace.errors",
    "TerminalSinkError": "headrace.errors",
    "LoadError": "headrace.errors",
    "TransientLoadError": "headrace.errors",
    "TerminalLoadError": "headrace.errors",
    "Transient": "headrace.errors",
    "Terminal": "headrace.errors",
    "is_transient": "headrace.errors",
}

__all__ = [
    "AsyncClient",
    "BufferFull",
    "Client",
    "ConfigError",
    "ConfigProblem",
    "Event",
    "FailedRecord",
    "HeadraceError",
    "LoadError",
    "ProcessingFailure",
    "QueueFull",
    "RequestRejected",
    "SinkError",
    "Terminal",
    "TerminalLoadError",
    "TerminalSinkError",
    "Transient",
    "TransientLoadError",
    "TransientSinkError",
    "WriteResult",
    "__version__",
    "is_transient",
]

if TYPE_CHECKING:
    from headrace.client import AsyncClient, Client, QueueFull
    from headrace.errors import (
        BufferFull,
        ConfigError,
        ConfigProblem,
        HeadraceError,
        LoadError,
        RequestRejected,
        SinkError,
        Terminal,
        TerminalLoadError,
        TerminalSinkError,
        Transient,
        TransientLoadError,
        TransientSinkError,
        is_transient,
    )
    from headrace.types import Event, FailedRecord, ProcessingFailure, WriteResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headrace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
