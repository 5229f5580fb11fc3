from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from headrace.storage import state
from headrace.transforms import TransformContext
from headrace.transforms.builtin.apply import Dedupe, Filter, Remap
from headrace.transforms.builtin.config import DedupeConfig, FilterConfig, RemapConfig
from headrace.types import Event
from support.buffer import checkpoint

T0 = 1_763_800_000_000_000


def ev(i: int, data: dict[str, Any], at: int | None = None) -> Event:
    return Event(f"id{i}", "clicks", "web", T0 + i if at is None else at, data)


def test_remap_renames_drops_adds_copies_and_casts() -> None:
    config = RemapConfig.model_validate({
        "type": "remap", "inputs": ["web"],
        "rename": {"uid": "user.id", "old": "new"}, "drop": ["secret"],
        "add": {"source": "web"}, "copy": {"timestamp": "$received_at_ms", "at": "$received_at",
                                           "eid": "$event_id", "page": "path"},
        "cast": {"count": "int", "price": "float", "ok": "bool", "ts": "iso8601"},
    })  # fmt: skip
    original = {"uid": 7, "old": 1, "secret": "x", "path": "/a", "count": "12", "price": 3,
                "ok": "true", "ts": 1_763_800_000}  # fmt: skip
    result = Remap("r", config).apply([ev(0, original), ev(1, {"count": "twelve"})])
    (out,) = result.events
    assert out.data == {"user": {"id": 7}, "new": 1, "path": "/a", "count": 12, "price": 3.0,
                        "ok": True, "ts": "2025-11-22T08:26:40.000Z", "source": "web",
                        "timestamp": T0 // 1000, "at": "2025-11-22T08:26:40.000Z", "eid": "id0",
                        "page": "/a"}  # fmt: skip
    assert original["uid"] == 7 and "secret" in original  # the dead-letter store keeps the input
    (failed,) = result.failed
    assert failed.reason == "cast_failed" and "count" in failed.error


def test_filter_conditions() -> None:
    config = FilterConfig.model_validate({
        "type": "filter", "inputs": ["web"],
        "condition": {"all": [{"field": "type", "in": ["click", "view"]},
                              {"not": {"field": "bot", "equals": True}},
                              {"any": [{"field": "page.path", "matches": "^/shop"},
                                       {"field": "n", "gte": 10}]}]},
    })  # fmt: skip
    datas = [
        {"type": "click", "page": {"path": "/shop/1"}},
        {"type": "click", "bot": True, "page": {"path": "/shop/1"}},
        {"type": "scroll", "n": 50},
        {"type": "view", "n": 10},
        {"type": "view", "n": "10"},  # a string is never >= a number
    ]
    result = Filter("f", config).apply([ev(i, d) for i, d in enumerate(datas)])
    assert [e.id for e in result.events] == ["id0", "id3"]
    assert result.dropped == 3
    with pytest.raises(ValidationError, match="exactly one operator"):
        FilterConfig.model_validate({"type": "filter", "inputs": ["w"],
                                        "condition": {"field": "a", "equals": 1, "in": [1]}})  # fmt: skip


def _commit(state_path: Path, hooks: list[Any]) -> None:
    conn = state.connect(state_path)
    state.init_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    checkpoint("sink", {"seg": 1}, on_apply=hooks).apply(conn)
    conn.execute("COMMIT")
    conn.close()


def test_dedupe_holds_across_restarts_and_only_remembers_delivered_events(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    config = DedupeConfig.model_validate({"type": "dedupe", "inputs": ["web"],
                                             "fields": ["requestid"], "window": "10m"})  # fmt: skip
    first = Dedupe("d", config)
    first.open(TransformContext("sink", path))
    result = first.apply(
        [ev(0, {"requestid": "a"}), ev(1, {"requestid": "a"}), ev(2, {"requestid": "b"})]
    )
    assert [e.id for e in result.events] == ["id0", "id2"] and result.dropped == 1
    # not committed (the sink never took the batch): a retry sees the same events as new
    assert len(first.apply([ev(0, {"requestid": "a"})]).events) == 1
    _commit(path, result.on_commit)
    first.close()
    second = Dedupe("d", config)  # a restart
    second.open(TransformContext("sink", path))
    again = second.apply([ev(3, {"requestid": "a"}), ev(4, {"requestid": "c"}),
                          ev(5, {"requestid": "b"}, at=T0 + 11 * 60 * 1_000_000)])  # fmt: skip
    assert [e.id for e in again.events] == ["id4", "id5"]  # b is outside the window
    # another sink has its own window
    other = Dedupe("d", config)
    other.open(TransformContext("other-sink", path))
    assert len(other.apply([ev(6, {"requestid": "a"})]).events) == 1
    second.close()
    other.close()


def test_dedupe_forgets_events_that_went_to_the_dead_letter_store(tmp_path: Path) -> None:
    from headrace.types import FailedRecord

    path = tmp_path / "state.db"
    config = DedupeConfig.model_validate({"type": "dedupe", "inputs": ["web"], "fields": ["k"]})
    dedupe = Dedupe("d", config)
    dedupe.open(TransformContext("sink", path))
    result = dedupe.apply([ev(0, {"k": "a"}), ev(1, {"k": "b"})])
    conn = state.connect(path)
    state.init_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    refused = [FailedRecord(result.events[1], "rejected", "the sink refused it")]
    checkpoint("sink", {"seg": 1}, on_apply=result.on_commit).apply(conn, refused)
    conn.execute("COMMIT")
    # a is remembered; b never reached the sink, so its replay from the dead-letter store passes
    replay = dedupe.apply([ev(2, {"k": "a"}), ev(3, {"k": "b"})])
    assert [e.data["k"] for e in replay.events] == ["b"]
    dedupe.close()


def test_dedupe_passes_events_missing_its_fields(tmp_path: Path) -> None:
    config = DedupeConfig.model_validate(
        {"type": "dedupe", "inputs": ["web"], "fields": ["requestid", "n"]}
    )
    dedupe = Dedupe("d", config)
    dedupe.open(TransformContext("sink", tmp_path / "state.db"))
    batch = [ev(i, {"payload": i}) for i in range(3)]
    batch += [ev(3, {"requestid": None, "n": 1}), ev(4, {"requestid": "r", "n": 1}),
              ev(5, {"requestid": "r"}), ev(6, {"requestid": "r", "n": 1})]  # fmt: skip
    result = dedupe.apply(batch)
    assert [e.id for e in result.events] == ["id0", "id1", "id2", "id3", "id4", "id5"]
    assert result.dropped == 1  # only the second complete identity ("r", 1)
    _commit(tmp_path / "state.db", result.on_commit)
    assert len(dedupe.apply([ev(7, {"payload": 7})]).events) == 1
    dedupe.close()
