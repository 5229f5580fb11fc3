"""Servers for the dashboard tests: ``headrace serve`` as a subprocess, with a pipeline file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serverproc import ServerProcess


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """``check()``'s first truthy value; fails the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``headrace serve`` with an optional pipeline text; stopped after the test."""
    started: list[ServerProcess] = []

    def start(pipeline: str | None = None, *, ready: bool = True) -> ServerProcess:
        config = None
        if pipeline is not None:
            config = tmp_path / f"pipeline{len(started)}.yaml"
            config.write_text(pipeline)
        server = ServerProcess(tmp_path / f"data{len(started)}", config=config, workers=1)
        started.append(server.start())
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
