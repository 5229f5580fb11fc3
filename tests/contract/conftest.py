from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.harness import Env, OpenSink, SinkUnderTest


@pytest.fixture
def opened(
    entry: SinkUnderTest, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[OpenSink]:
    """The parametrized sink under test (``entry``), provisioned and opened; closed and its
    destination removed after the test."""
    with contextlib.ExitStack() as stack:
        yield OpenSink(entry, Env(request, tmp_path, stack))
