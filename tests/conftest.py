from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.serverproc import kill_leftovers


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


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto server (S3 + DynamoDB) shared by the session's tests."""
    from support.motoserver import moto_server

    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url
