"""Kept refusals are written from a thread (``BadRowKeeper``): the answer never waits for
SQLite, and a failed write is logged, never raised into the request."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.ingest.badrows import BadRowKeeper
from headrace.storage.badrows import BadRowStore

pytestmark = pytest.mark.anyio


def row(source: str, n: int) -> tuple[str, str, str, str, str, int, bytes]:
    return (source, "s", "decode_error", "", f"bad {n}", n, b"{")


async def test_the_keeper_writes_from_a_thread_and_drains(data_dir: Path) -> None:
    store = BadRowStore(data_dir)
    keeper = BadRowKeeper(store)
    keeper.keep([row("a", 1), row("b", 2)])
    keeper.keep([row("a", 3)])
    await keeper.drain()
    assert keeper.pending == set()
    assert [r.message for r in store.find()] == ["bad 1", "bad 2", "bad 3"]


async def test_a_failed_write_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    keeper = BadRowKeeper(BadRowStore(not_a_dir))  # badrows.db cannot be opened
    keeper.keep([row("a", 1)])
    await keeper.drain()
    assert "cannot keep bad rows" in caplog.text
