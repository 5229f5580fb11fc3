from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from headrace.buffer.local.positions import load_positions
from headrace.query.lake import LakeQuery, export_csv, query_events
from headrace.sinks.lake.config import CompactionSettings, LakeConfig, StreamSchema
from headrace.sinks.lake.sink import LakeSink
from headrace.storage import state
from headrace.types import Event
from support.buffer import checkpoint

T0 = 1_763_800_000_000_000  # 2025-11-22T08:26:40Z in µs


def event(n: int, data: dict[str, Any], stream: str = "clicks", **kw: Any) -> Event:
    return Event(f"id-{n:05d}", stream, "events", T0 + n, data, **kw)


def open_lake(data_dir: Path, **config: Any) -> LakeSink:
    sink = LakeSink("lake", LakeConfig(type="lake", inputs=["events"], **config), data_dir)
    sink.open()
    state.init_schema(sink._conn)  # type: ignore[arg-type]
    return sink


def write(sink: LakeSink, events: list[Event]) -> list[Any]:
    return sink.write(events, state.Checkpoint("lake")).failed


def read_all(data_dir: Path, sink: LakeSink, stream: str = "clicks") -> list[dict[str, Any]]:
    result = query_events(data_dir, "lake", sink.config, stream, [("limit", "1000")])
    return list(reversed(result["events"]))


def test_events_round_trip_with_inferred_columns(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    write(
        lake,
        [
            event(
                1,
                {
                    "action": "click",
                    "n": 1,
                    "ok": True,
                    "x": 1.5,
                    "tags": ["a"],
                    "meta": {"k": "v"},
                },
            )
        ],
    )
    (stored,) = read_all(data_dir, lake)
    assert stored["id"] == "id-00001"
    assert stored["data"] == {
        "action": "click",
        "n": 1,
        "ok": True,
        "x": 1.5,
        "tags": ["a"],
        "meta": {"k": "v"},
    }
    (path,) = (data_dir / "lake" / "clicks").rglob("*.parquet")
    assert path.parent.relative_to(data_dir / "lake").as_posix() == "clicks/dt=2025-11-22/hour=08"
    schema = pq.read_schema(path)
    assert schema.field("n").type == "int64" and schema.field("_time").type.tz == "UTC"


def test_fields_that_do_not_fit_are_kept_in_extra_never_dropped(data_dir: Path) -> None:
    lake = open_lake(data_dir, max_columns=2)
    write(lake, [event(1, {"n": 1, "a": "x"})])
    write(lake, [event(2, {"n": "not a number", "a": "y", "later": 5, "_id": "clash", "N": 3})])
    first, second = read_all(data_dir, lake)
    assert first["data"] == {"n": 1, "a": "x"}
    assert second["data"] == {"n": "not a number", "a": "y", "later": 5, "_id": "clash", "N": 3}
    assert second["id"] == "id-00002"


def test_declared_types_send_misfits_to_dead_letters(data_dir: Path) -> None:
    lake = open_lake(
        data_dir, streams={"clicks": StreamSchema(fields={"n": "int64", "at": "timestamp"})}
    )
    failed = write(lake, [event(1, {"n": 1, "at": "2025-11-22T10:00:00Z"}), event(2, {"n": "two"})])
    assert [(f.event.id, f.reason) for f in failed] == [("id-00002", "type_mismatch")]
    assert 'field "n" is declared int64' in failed[0].error
    (stored,) = read_all(data_dir, lake)
    assert stored["data"] == {"n": 1, "at": "2025-11-22T10:00:00Z"}


def test_event_time_field_decides_the_partition(data_dir: Path) -> None:
    lake = open_lake(data_dir, streams={"*": StreamSchema(time_field="time")})
    write(
        lake,
        [
            event(1, {"time": 1_700_000_000_000}),
            event(2, {"time": "2024-02-29T23:59:59Z"}),
            event(3, {"no": "time"}),
        ],
    )
    parts = sorted(
        p.parent.relative_to(data_dir / "lake").as_posix()
        for p in (data_dir / "lake").rglob("*.parquet")
    )
    assert parts == [
        "clicks/dt=2023-11-14/hour=22",
        "clicks/dt=2024-02-29/hour=23",
        "clicks/dt=2025-11-22/hour=08",
    ]


def test_uncommitted_files_are_removed_on_open(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    write(lake, [event(1, {"a": 1})])
    (kept,) = (data_dir / "lake").rglob("*.parquet")
    orphan = kept.with_name("0000-orphan.parquet")
    orphan.write_bytes(kept.read_bytes())
    (kept.parent / ".x.parquet.tmp").write_bytes(b"half")
    lake.close()
    open_lake(data_dir)
    assert [p.name for p in kept.parent.iterdir()] == [kept.name]


def test_ids_that_may_repeat_are_stored_once(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    write(lake, [event(1, {"a": 1}, may_repeat=True), event(2, {"a": 2}, may_repeat=True)])
    write(
        lake,
        [
            event(2, {"a": 2}, may_repeat=True),
            event(3, {"a": 3}, may_repeat=True),
            event(3, {"a": 3}, may_repeat=True),
        ],
    )
    assert [e["id"] for e in read_all(data_dir, lake)] == ["id-00001", "id-00002", "id-00003"]


def test_checkpoint_commits_with_the_files(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    lake.write([event(1, {"a": 1})], checkpoint("lake", {"seg-a": 123}, finished={"seg-a"}))
    conn = state.connect(data_dir / "state.db")
    assert load_positions(conn, "lake") == ({"seg-a": 123}, {"seg-a"})


def test_compaction_merges_small_files_and_keeps_every_row(data_dir: Path) -> None:
    lake = open_lake(data_dir, compaction=CompactionSettings(min_files=3, interval=0, grace=0))
    for n in range(5):
        write(lake, [event(n * 10 + k, {"n": n, "k": k}) for k in range(3)])
    write(lake, [event(50, {"n": "late type change"})])
    before = read_all(data_dir, lake)
    lake.maintain()
    files = list((data_dir / "lake").rglob("*.parquet"))
    assert lake.compactions == 1
    after = read_all(data_dir, lake)
    assert after == before and len(after) == 16
    time.sleep(0.01)
    lake.maintain()  # grace 0: the replaced files go
    assert len(list((data_dir / "lake").rglob("*.parquet"))) == 1 < len(files)


def test_export_writes_rfc4180_csv_with_filters(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    write(
        lake,
        [
            event(1, {"user": "a", "note": 'said "hi", left'}),
            event(2, {"user": "b", "note": "line\nbreak"}),
        ],
    )
    out = io.StringIO()
    rows = export_csv(
        data_dir, "lake", lake.config, LakeQuery("lake", "clicks", where=[("user", "a")]), out
    )
    assert rows == 1
    assert out.getvalue() == (
        "id,received_at,time,user,note,_extra\r\n"
        'id-00001,2025-11-22T08:26:40.000001Z,2025-11-22T08:26:40.000001Z,a,"said ""hi"", left",\r\n'
    )


def test_query_pages_newest_first_with_a_cursor(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    write(lake, [event(n, {"n": n}) for n in range(25)])
    seen: list[str] = []
    cursor = None
    while True:
        params = [("limit", "10")] + ([("cursor", cursor)] if cursor else [])
        page = query_events(data_dir, "lake", lake.config, "clicks", params)
        seen += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"id-{n:05d}" for n in reversed(range(25))]
    since = query_events(
        data_dir, "lake", lake.config, "clicks", [("since", str(T0 + 20)), ("until", str(T0 + 22))]
    )
    assert [e["id"] for e in since["events"]] == ["id-00021", "id-00020"]


def test_size_tiers_keep_merged_files_apart_from_small_ones() -> None:
    from headrace.sinks.lake.sink import size_tier

    kib = 1024
    assert [
        size_tier(s) for s in (0, 255 * kib, 256 * kib, 2047 * kib, 2048 * kib, 16 * 1024 * kib)
    ] == [0, 0, 1, 1, 2, 3]


def test_known_columns_take_only_values_of_their_exact_type(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    write(lake, [event(1, {"n": 1, "x": 1.5, "flag": False})])
    write(lake, [event(2, {"n": True, "x": 2, "flag": 1}), event(3, {"n": 2**63, "x": None})])
    _, second, third = read_all(data_dir, lake)
    assert second["data"] == {"n": True, "x": 2.0, "flag": 1}  # True and 1 kept in _extra
    assert third["data"] == {"n": 2**63}  # beyond int64: in _extra, exact
    (path,) = [p for p in (data_dir / "lake").rglob("*.parquet") if pq.read_table(p).num_rows == 2]
    table = pq.read_table(path)
    assert "n" not in table.column_names  # no row of this file had an int64 for it
    assert table.column("x").to_pylist() == [2.0, None]


def test_the_same_id_on_two_streams_is_two_events(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    write(
        lake,
        [
            event(1, {"a": 1}, stream="orders", may_repeat=True),
            event(1, {"a": 2}, stream="users", may_repeat=True),
        ],
    )
    assert [e["data"] for e in read_all(data_dir, lake, "orders")] == [{"a": 1}]
    assert [e["data"] for e in read_all(data_dir, lake, "users")] == [{"a": 2}]


def test_a_declared_type_overrides_an_inferred_column(data_dir: Path) -> None:
    write(open_lake(data_dir), [event(1, {"code": 1})])
    lake = open_lake(data_dir, streams={"clicks": StreamSchema(fields={"code": "string"})})
    failed = write(lake, [event(2, {"code": "x"}), event(3, {"code": 5})])
    assert [(f.event.id, f.reason) for f in failed] == [("id-00003", "type_mismatch")]
    (path,) = [
        p
        for p in (data_dir / "lake").rglob("*.parquet")
        if pq.read_table(p).column("_id").to_pylist() == ["id-00002"]
    ]
    assert pq.read_schema(path).field("code").type == "string"


def test_fields_named_like_partitions_survive_queries_and_compaction(data_dir: Path) -> None:
    lake = open_lake(data_dir, compaction=CompactionSettings(min_files=2, interval=0, grace=0))
    write(lake, [event(1, {"dt": "mine", "hour": 99})])
    write(lake, [event(2, {"dt": "also mine", "hour": 7})])
    lake.maintain()
    assert lake.compactions == 1
    assert [e["data"] for e in read_all(data_dir, lake)] == [
        {"dt": "mine", "hour": 99},
        {"dt": "also mine", "hour": 7},
    ]


def test_names_differing_only_in_case_get_one_column_in_one_batch(data_dir: Path) -> None:
    lake = open_lake(data_dir)
    write(lake, [event(1, {"Foo": 1, "foo": 2})])
    (stored,) = read_all(data_dir, lake)
    assert stored["data"] == {"Foo": 1, "foo": 2}
    (path,) = (data_dir / "lake").rglob("*.parquet")
    assert [n for n in pq.read_schema(path).names if n.lower() == "foo"] == ["Foo"]


def test_filters_on_any_field_name_in_extra(data_dir: Path) -> None:
    odd = 'a"b/c~d\u00e9'
    lake = open_lake(data_dir, max_columns=1)
    write(lake, [event(1, {"first": 1, odd: "yes"}), event(2, {"first": 2, odd: "no"})])
    found = query_events(data_dir, "lake", lake.config, "clicks", [(odd, "yes"), ("\u023a", "x")])
    assert found["events"] == []  # both filters apply; the second matches nothing
    found = query_events(data_dir, "lake", lake.config, "clicks", [(odd, "yes")])
    assert [e["id"] for e in found["events"]] == ["id-00001"]


def test_a_forged_cursor_is_refused(data_dir: Path) -> None:
    import base64

    import pytest

    from headrace.query.lake import QueryError

    lake = open_lake(data_dir)
    write(lake, [event(1, {"a": 1})])
    for forged in (
        "not-base64!",
        base64.urlsafe_b64encode(b'[100000000000000000000000000, "x"]').decode(),
    ):
        with pytest.raises(QueryError) as info:
            query_events(data_dir, "lake", lake.config, "clicks", [("cursor", forged)])
        assert info.value.reason == "invalid_cursor"
