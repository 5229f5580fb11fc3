"""Kept refusals: written from a thread (``BadRowKeeper``), listed by ``GET /v1/badrows``
(``headrace.ingest.badrows_api``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.config.models import default_pipeline
from headrace.ingest.badrows import BadRowKeeper, BadRowStore
from headrace.ingest.badrows_api import BadRowsApi
from headrace.web.access import ADMIN_TOKEN_ENV, ReadAccess
from web.answers import Recorder, request

pytestmark = pytest.mark.anyio


def row(source: str, n: int) -> tuple[str, str, str, str, str, int, bytes]:
    return (source, "s", "decode_error", "", f"bad {n}", n, b"{")


async def listing(api: BadRowsApi, query: bytes) -> Recorder:
    sent = Recorder()
    await api(request("GET", "/v1/badrows", query=query), sent)
    return sent


async def test_kept_rows_are_listed_oldest_first_in_pages(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    store = BadRowStore(data_dir)
    keeper = BadRowKeeper(store)
    keeper.keep([row("a", 1), row("b", 2)])
    keeper.keep([row("a", 3)])
    await keeper.drain()
    assert keeper.pending == set()
    api = BadRowsApi(store, ReadAccess(default_pipeline()))
    first = (await listing(api, b"limit=1")).json()
    assert [r["message"] for r in first["bad_rows"]] == ["bad 1"]
    rest = (await listing(api, f"after={first['next_after']}".encode())).json()
    assert [r["message"] for r in rest["bad_rows"]] == ["bad 2", "bad 3"]
    assert rest["next_after"] is None
    only_a = (await listing(api, b"source=a")).json()
    assert [r["source"] for r in only_a["bad_rows"]] == ["a", "a"]


@pytest.mark.parametrize(
    "query", [b"limit=0", b"limit=1001", b"limit=x", b"after=-1", b"after=\xc2\xb9"]
)
async def test_bad_paging_is_refused(data_dir: Path, query: bytes) -> None:
    api = BadRowsApi(BadRowStore(data_dir), ReadAccess(default_pipeline()))
    sent = await listing(api, query)
    assert (sent.status, sent.json()["error"]) == (400, "invalid_parameter")


async def test_a_failed_write_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    keeper = BadRowKeeper(BadRowStore(not_a_dir))  # badrows.db cannot be opened
    keeper.keep([row("a", 1)])
    await keeper.drain()
    assert "cannot keep bad rows" in caplog.text
