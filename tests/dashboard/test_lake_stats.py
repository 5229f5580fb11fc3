"""Dashboard aggregations over a real lake written by the lake sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headrace.dashboard import lake_stats as ls
from headrace.query.lake import LakeQuery
from headrace.sinks.lake.config import LakeConfig, StreamSchema
from headrace.sinks.lake.sink import LakeSink
from headrace.storage import state
from headrace.types import Event

MIN = 60_000_000
T0 = 1_763_800_000_000_000 // MIN * MIN  # a whole minute


def lake_with(data_dir: Path, events: list[tuple[int, dict[str, Any]]], **config: Any) -> LakeSink:
    sink = LakeSink("lake", LakeConfig(type="lake", inputs=["events"], **config), data_dir)
    sink.open()
    state.init_schema(sink._conn)  # type: ignore[arg-type]
    batch = [Event(f"id-{i:05d}", "clicks", "events", t, d) for i, (t, d) in enumerate(events)]
    sink.write(batch, state.Checkpoint("lake"))
    sink.close()
    return sink


def query(**kw: Any) -> LakeQuery:
    return LakeQuery("lake", "clicks", since_us=T0, until_us=T0 + 10 * MIN, **kw)


def test_count_over_time_buckets_and_groups(data_dir: Path) -> None:
    events = [(T0 + 10, {"action": "view"})] * 3 + [(T0 + 2 * MIN + 5, {"action": "buy"})]
    events += [(T0 + 2 * MIN + 6, {"action": "view", "extra": 1})]
    events += [(T0 + 3 * MIN, {"other": 1})]  # no action: counted as (none)
    sink = lake_with(data_dir, events)
    lake = ls.open_lake(data_dir, "lake", sink.config)
    assert lake is not None
    try:
        plain = ls.count_over_time(lake, query(), MIN)
        assert plain["times"][:4] == [(T0 + i * MIN) // 1_000_000 for i in range(4)]
        assert plain["series"] == {"events": [3, 0, 2, 1, 0, 0, 0, 0, 0, 0]}
        grouped = ls.count_over_time(lake, query(), MIN, group_by="action")
        assert grouped["series"]["view"][:4] == [3, 0, 1, 0]
        assert grouped["series"]["buy"][:4] == [0, 0, 1, 0]
        assert grouped["series"][ls.MISSING][:4] == [0, 0, 0, 1]
        assert grouped["total"] == 6
        top_one = ls.count_over_time(lake, query(), MIN, group_by="action", top=1)
        assert top_one["series"]["view"][:4] == [3, 0, 1, 0]
        assert top_one["series"][ls.OTHER][:4] == [0, 0, 1, 1]
        filtered = ls.count_over_time(lake, query(where=[("action", "view")]), MIN)
        assert sum(filtered["series"]["events"]) == 4
    finally:
        lake.close()


def test_top_values_reads_columns_and_extra(data_dir: Path) -> None:
    events = [(T0 + i, {"page": "/a" if i < 3 else "/b"}) for i in range(5)]
    events += [(T0 + 9, {"page": 7})]  # does not fit the string column: kept in _extra
    sink = lake_with(data_dir, events)
    lake = ls.open_lake(data_dir, "lake", sink.config)
    assert lake is not None
    try:
        assert ls.top_values(lake, query(), "page") == [
            {"value": "/a", "count": 3},
            {"value": "/b", "count": 2},
            {"value": "7", "count": 1},
        ]
        assert ls.top_values(lake, query(), "page", limit=1) == [{"value": "/a", "count": 3}]
        # a name that is SQL stays a name
        assert ls.top_values(lake, query(), 'x") FROM t; --') == [{"value": ls.MISSING, "count": 6}]
    finally:
        lake.close()


def test_arrivals_per_minute_counts_by_receive_time(data_dir: Path) -> None:
    schema = {"clicks": StreamSchema(time_field="at")}
    # events from long ago (event time) that arrived now count by arrival
    now = T0
    events = [(now - 30 * MIN + i, {"at": "2020-01-01T00:00:00Z"}) for i in range(4)]
    events += [(now - 5 * MIN, {"at": "2020-01-01T00:00:00Z"})]
    sink = lake_with(data_dir, events, streams=schema)
    lake = ls.open_lake(data_dir, "lake", sink.config)
    assert lake is not None
    try:
        since = now - 60 * MIN
        counts = ls.arrivals_per_minute(lake, "clicks", since, now)
        assert len(counts) == 60 and sum(counts) == 5
        assert counts[30] == 4 and counts[55] == 1
        assert ls.stream_summaries(lake)[0]["events"] == 5
        # the files were written after `since`; they hold nothing received in a later window
        assert sum(ls.arrivals_per_minute(lake, "clicks", now, now + 5 * MIN)) == 0
    finally:
        lake.close()


def test_pick_bucket() -> None:
    assert ls.pick_bucket(0, 3_600_000_000) == MIN
    assert ls.pick_bucket(0, 24 * 3_600_000_000) == 15 * MIN
    assert ls.pick_bucket(0, 80 * 365 * 24 * 3_600_000_000) == 365 * 24 * 3_600_000_000
