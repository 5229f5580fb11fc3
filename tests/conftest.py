from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serverproc import kill_leftovers


@pytest.fixture(autouse=True)
def no_leftover_servers() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    path.mkdir()
    yield path
