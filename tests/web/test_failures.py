"""``GET /v1/deadletters`` and ``GET /v1/badrows``: one listing (``headrace.web.failures``) over
both kinds, oldest first in pages, filtered, guarded by the read credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.config.models import default_pipeline
from headrace.storage import state
from headrace.storage.badrows import BadRowStore
from headrace.storage.failures import BAD_ROWS, DEAD_LETTERS
from headrace.types import Event, FailedRecord
from headrace.web.access import ADMIN_TOKEN_ENV, ReadAccess
from headrace.web.failures import FailuresApi
from web.answers import Recorder, request

pytestmark = pytest.mark.anyio


async def listing(
    api: FailuresApi, query: bytes, headers: dict[str, str] | None = None
) -> Recorder:
    sent = Recorder()
    await api(request("GET", "/v1/failures", query=query, headers=headers), sent)
    return sent


async def test_bad_rows_are_listed_oldest_first_in_pages(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    BadRowStore(data_dir).add(
        [(src, "s", "decode_error", "", f"bad {n}", n, b"{\xff") for src, n in (("a", 1), ("b", 2), ("a", 3))]
    )  # fmt: skip
    api = FailuresApi(BAD_ROWS, data_dir, ReadAccess(default_pipeline()))
    first = (await listing(api, b"limit=1")).json()
    assert [r["message"] for r in first["bad_rows"]] == ["bad 1"]
    assert first["bad_rows"][0]["raw"] == "{\ufffd"  # bytes as text, invalid UTF-8 replaced
    rest = (await listing(api, f"after={first['next_after']}".encode())).json()
    assert [r["message"] for r in rest["bad_rows"]] == ["bad 2", "bad 3"]
    assert rest["next_after"] is None
    only_a = (await listing(api, b"source=a")).json()
    assert [r["source"] for r in only_a["bad_rows"]] == ["a", "a"]


async def test_dead_letters_are_listed_with_their_event(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    api = FailuresApi(DEAD_LETTERS, data_dir, ReadAccess(default_pipeline()))
    assert (await listing(api, b"")).json() == {"dead_letters": [], "next_after": None}
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    event = Event("e1", "orders", "shop", 1, {"total": "lots"})
    with conn:
        state.add_dead_letters(conn, "lake", [FailedRecord(event, "type_mismatch", "no")], 2)
    conn.close()
    (letter,) = (await listing(api, b"sink=lake&reason=type_mismatch")).json()["dead_letters"]
    assert (letter["event_id"], letter["data"], letter["attempts"]) == ("e1", {"total": "lots"}, 2)
    assert (await listing(api, b"sink=db")).json()["dead_letters"] == []


@pytest.mark.parametrize(
    "query", [b"limit=0", b"limit=1001", b"limit=x", b"after=-1", b"after=\xc2\xb9"]
)
@pytest.mark.parametrize("kind", [DEAD_LETTERS, BAD_ROWS], ids=lambda k: k.name)
async def test_bad_paging_is_refused(data_dir: Path, query: bytes, kind: object) -> None:
    api = FailuresApi(kind, data_dir, ReadAccess(default_pipeline()))  # type: ignore[arg-type]
    sent = await listing(api, query)
    assert (sent.status, sent.json()["error"]) == (400, "invalid_parameter")


async def test_the_read_credentials_guard_it(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "s3cret")
    api = FailuresApi(BAD_ROWS, data_dir, ReadAccess(default_pipeline()))
    assert (await listing(api, b"")).status == 401
    allowed = await listing(api, b"", {"authorization": "Bearer s3cret"})
    assert allowed.status == 200
