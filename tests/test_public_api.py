"""The public surface of ``import headrace`` is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import headrace

PUBLIC = [
    "AsyncClient", "BufferFull", "Client", "ConfigError", "ConfigProblem", "Event",
    "FailedRecord", "HeadraceError", "LoadError", "ProcessingFailure", "QueueFull",
    "RequestRejected", "SinkError", "Terminal", "TerminalLoadError", "TerminalSinkError",
    "Transient", "TransientLoadError", "TransientSinkError", "WriteResult", "__version__",
    "is_transient",
]  # fmt: skip


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert sorted(headrace.__all__) == sorted(PUBLIC)
    assert sorted([*headrace._EXPORTS, "__version__"]) == sorted(PUBLIC)  # each one loadable
    for name in headrace.__all__:
        assert getattr(headrace, name) is not None
    from headrace.client import Client
    from headrace.errors import TransientSinkError

    assert headrace.Client is Client and headrace.TransientSinkError is TransientSinkError


def test_the_version_is_the_package_s() -> None:
    assert headrace.__version__ == importlib.metadata.version("headrace")


def test_importing_headrace_loads_none_of_its_dependencies() -> None:
    code = "import sys, headrace; print(sorted(m for m in ('httpx', 'pydantic', 'pyarrow', " \
           "'duckdb', 'psycopg', 'msgspec') if m in sys.modules))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
