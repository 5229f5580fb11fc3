"""One query builder over both kinds of kept failure: the same filters, paging both ways, counts
and choices answer for sink dead letters and ingest bad rows, and the kinds stay apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.storage import failures, state
from headrace.storage.badrows import BadRowStore
from headrace.storage.failures import BAD_ROWS, DEAD_LETTERS, FailureFilter, FailureKind
from headrace.types import Event, FailedRecord

T0 = 1_763_800_000_000_000


def keep_dead_letters(data_dir: Path, sink: str, reason: str, stream: str, count: int) -> None:
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    failed = [
        FailedRecord(Event(f"{sink}-{stream}-{i}", stream, "shop", T0 + i, {"n": i}), reason, "no")
        for i in range(count)
    ]
    with conn:
        state.add_dead_letters(conn, sink, failed, 1)
    conn.close()


def keep_bad_rows(data_dir: Path, source: str, reason: str, stream: str, count: int) -> None:
    BadRowStore(data_dir).add(
        [(source, stream, reason, "/n", "bad", T0 + i, b"{") for i in range(count)]
    )


@pytest.fixture
def kept(data_dir: Path) -> Path:
    """Both kinds, with the same shape of owners, reasons and streams."""
    keep_dead_letters(data_dir, "lake", "type_mismatch", "orders", 3)
    keep_dead_letters(data_dir, "db", "unknown_field", "orders", 2)
    keep_dead_letters(data_dir, "lake", "type_mismatch", "clicks", 1)
    keep_bad_rows(data_dir, "lake", "schema_violation", "orders", 3)
    keep_bad_rows(data_dir, "db", "decode_error", "orders", 2)
    keep_bad_rows(data_dir, "lake", "schema_violation", "clicks", 1)
    return data_dir


@pytest.mark.parametrize("kind", [DEAD_LETTERS, BAD_ROWS], ids=lambda k: k.name)
def test_filters_pages_counts_and_choices_answer_alike(kept: Path, kind: FailureKind) -> None:
    with failures.reading(kept, kind) as conn:
        assert conn is not None
        everything = FailureFilter()
        assert failures.count(conn, kind, everything) == 6
        oldest = failures.select_page(conn, kind, everything, limit=4, after_id=0)
        ids = [row[0] for row in oldest]
        assert ids == sorted(ids) and len(ids) == 4
        rest = failures.select_page(conn, kind, everything, limit=4, after_id=ids[-1])
        assert len(rest) == 2 and rest[0][0] > ids[-1]
        newest = failures.select_page(conn, kind, everything, limit=4)
        assert [row[0] for row in newest] == sorted([*ids, *(r[0] for r in rest)])[::-1][:4]
        older = failures.select_page(conn, kind, everything, limit=10, before_id=newest[-1][0])
        assert len(older) == 2

        by_owner = FailureFilter(owner="lake", stream="orders")
        assert failures.count(conn, kind, by_owner) == 3
        # each filter's choices are counted under the other filters
        assert failures.choices(conn, kind, by_owner, kind.owner) == [("lake", 3), ("db", 2)]
        assert failures.choices(conn, kind, by_owner, "stream") == [("orders", 3), ("clicks", 1)]
        with pytest.raises(ValueError, match="not filtered by"):
            failures.choices(conn, kind, everything, "error")


def test_the_kinds_stay_apart(kept: Path) -> None:
    with failures.reading(kept, DEAD_LETTERS) as conn:
        assert conn is not None
        reasons = failures.choices(conn, DEAD_LETTERS, FailureFilter(), "reason")
    assert {r for r, _ in reasons} == {"type_mismatch", "unknown_field"}
    with failures.reading(kept, BAD_ROWS) as conn:
        assert conn is not None
        reasons = failures.choices(conn, BAD_ROWS, FailureFilter(), "reason")
        (one,) = failures.select_page(conn, BAD_ROWS, FailureFilter(), limit=1)
    assert {r for r, _ in reasons} == {"schema_violation", "decode_error"}
    assert dict(zip(failures.column_names(BAD_ROWS), one, strict=True))["raw"] == b"{"


def test_replayed_rows_are_left_out_unless_asked(kept: Path) -> None:
    conn = state.connect(kept / "state.db")
    letters = state.list_dead_letters(conn, sink="db")
    with conn:
        state.mark_replayed(conn, letters)
    assert state.list_dead_letters(conn, sink="db") == []
    assert len(state.list_dead_letters(conn, sink="db", include_replayed=True)) == 2
    conn.close()
    store = BadRowStore(kept)
    store.mark_replayed([row.id for row in store.find(source="db")])
    assert store.find(source="db") == []
    assert [r.reason for r in store.find(source="db", include_replayed=True)] == [
        "decode_error"
    ] * 2
    assert len(store.find(stream="clicks")) == 1


def test_nothing_kept_yet_reads_as_none(data_dir: Path) -> None:
    with failures.reading(data_dir, DEAD_LETTERS) as conn:
        assert conn is None  # no state.db
    state.connect(data_dir / "state.db").close()  # a database without the table
    with failures.reading(data_dir, DEAD_LETTERS) as conn:
        assert conn is None


def test_filter_values_from_a_query_string() -> None:
    values = {"sink": "lake", "source": "web", "reason": "", "replayed": "true"}
    assert FailureFilter.from_params(DEAD_LETTERS, values) == FailureFilter(
        owner="lake", include_replayed=True
    )
    assert FailureFilter.from_params(BAD_ROWS, values).owner == "web"
