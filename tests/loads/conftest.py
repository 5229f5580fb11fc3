"""Fixtures of the bulk-load tests: an export server, a canary server, PostgreSQL schemas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.exportserver import CANARY_HOST, EXPORT_HOST, FileServer, serving, throwaway_schema


@pytest.fixture
def export_server() -> Iterator[FileServer]:
    yield from serving(EXPORT_HOST)


@pytest.fixture
def canary() -> Iterator[FileServer]:
    """A server no fetch may ever reach (it stands for every forbidden address)."""
    yield from serving(CANARY_HOST)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    yield from throwaway_schema("hr loads ")  # a space: names are always quoted
