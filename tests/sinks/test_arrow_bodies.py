"""The lake's two ways of storing a batch agree: Arrow parsing the stored bodies
(``write_requests``) and a dict per event (``write``) give the same files, row for row; and the
Arrow path declines every batch it could store differently."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from headrace.buffer.records import (
    FORMAT_ARRAY,
    FORMAT_NDJSON,
    FORMAT_OBJECT,
    BufferedRequest,
    expand_events,
)
from headrace.ids import new_base_id
from headrace.sinks.arrow_bodies import body_columns
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.lake.sink import LakeSink
from headrace.storage import state
from support.buffer import checkpoint

HOUR_US = 3600 * 1_000_000
NOW_US = time.time_ns() // 1000
BASE = new_base_id().to_bytes(16, "big")
SETTLE = [{"s": "a", "n": 1, "f": 0.5, "b": True, "t": "x"}]
"""The first batch of each stream, through ``write``: it settles the columns s (string),
n (int64), f (float64), b (bool) and t (string)."""


def req(events: list[dict[str, Any]], fmt: int = FORMAT_ARRAY, *, stream: str = "clicks",
        at: int = NOW_US, body: bytes | None = None, **kw: Any) -> BufferedRequest:  # fmt: skip
    if body is None:
        if fmt == FORMAT_ARRAY:
            body = msgspec.json.encode(events)
        elif fmt == FORMAT_OBJECT:
            (only,) = events
            body = msgspec.json.encode(only)
        else:
            body = b"".join(msgspec.json.encode(e) + b"\n" for e in events)
    base = new_base_id().to_bytes(16, "big")
    return BufferedRequest(at, base, stream, "web", len(events), fmt, body, **kw)


def open_lake(data_dir: Path, **config: Any) -> LakeSink:
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn)
    conn.close()
    sink = LakeSink("lake", LakeConfig(type="lake", inputs=["web"], **config), data_dir)
    sink.open()
    return sink


def files(data_dir: Path) -> list[tuple[Any, list[dict[str, Any]]]]:
    """Every file's schema and rows, in the order of their first id (file names are random)."""
    tables = [pq.read_table(f) for f in (data_dir / "lake").rglob("*.parquet")]
    return sorted(((t.schema, t.to_pylist()) for t in tables), key=lambda f: f[1][0]["_id"])


def stored_both_ways(tmp_path: Path, batch: list[BufferedRequest], **config: Any) -> list[Any]:
    """Store ``SETTLE`` then ``batch`` in two lakes, by ``write`` and by ``write_requests``;
    assert both give the same files and return them."""
    settle = [*expand_events(req(SETTLE)), *expand_events(req(SETTLE, stream="views"))]
    results = []
    for arrow in (False, True):
        data_dir = tmp_path / ("arrow" if arrow else "dicts")
        sink = open_lake(data_dir, **config)
        sink.write(settle, checkpoint("lake", {"seg": 0}))
        if arrow:
            assert sink.write_requests(batch, checkpoint("lake", {"seg": 1})) is not None
        else:
            events = [e for r in batch for e in expand_events(r)]
            assert not sink.write(events, checkpoint("lake", {"seg": 1})).failed
        sink.close()
        results.append(files(data_dir))
    dicts, arrow_files = results
    assert arrow_files == dicts
    return dicts


PRETTY = b'[\n  {"s": "p", "n": 7},\n  {\n    "f": 3\n  }\n]\n'

AGREE = {
    "formats mixed": [
        req([{"s": "b", "n": 2, "f": 1.25, "b": False}, {"s": "c", "n": -3}]),
        req([{"n": 4, "t": "y"}], FORMAT_OBJECT),
        req([{"s": "d"}, {"f": 2.0}, {"b": True}], FORMAT_NDJSON),
    ],
    "pretty-printed bodies": [
        req([{}, {}], body=PRETTY),
        req([{}], FORMAT_OBJECT, body=b'{\n "s": "q"\r\n}'),
    ],
    "whole numbers in a float column": [req([{"f": 1}, {"f": -(2**53 - 1)}, {"f": 0}])],
    "strings that look like times": [req([{"s": "2026-12-05T06:00:00Z", "t": "2026-12-05"}])],
    "escapes and unicode": [req([{"s": 'tab\there "q" \\ é 😀 \u0001', "t": "\u2028"}])],
    "explicit nulls make a column": [req([{"s": None}, {"n": 1, "f": None}])],
    "an absent field makes none": [req([{"n": 1}, {"n": 2}])],
    "a key named as a value only": [req([{"s": "f", "n": 1}])],
    "empty requests": [req([], body=b"[]"), req([{"n": 1}]), req([], body=b" [ ] ")],
    "ndjson with blank lines and CRLF": [
        req([{"n": 1}, {"n": 2}], FORMAT_NDJSON, body=b'{"n": 1}\r\n\r\n  \n{"n": 2}\r\n')
    ],
    "two hours and two streams": [
        req([{"n": 1}], at=NOW_US - HOUR_US),
        req([{"n": 2}]),
        req([{"s": "other"}], stream="views"),
    ],
}


@pytest.mark.parametrize("batch", AGREE.values(), ids=AGREE.keys())
def test_arrow_and_dict_paths_store_the_same_files(tmp_path: Path, batch: Any) -> None:
    stored_both_ways(tmp_path, batch)


def test_two_streams_each_get_their_files(tmp_path: Path) -> None:
    got = stored_both_ways(tmp_path, AGREE["two hours and two streams"])
    views = [rows for _schema, rows in got if rows[0].get("s") == "other"]
    assert views and views[0][0]["_extra"] is None


DECLINE = {
    "a field with no column yet": [req([{"new": 1}])],
    "an int column given a float": [req([{"n": 1.5}])],
    "an int column given a bool": [req([{"n": True}])],
    "a string column given a number": [req([{"s": 5}])],
    "a bool column given a number": [req([{"b": 1}])],
    "a float column given a bool": [req([{"f": True}])],
    "a nested object": [req([{"s": {"deep": 1}}])],
    "an int a double holds only approximately": [req([{"f": 2**53 + 1}])],
    "an int past 64 bits": [req([{"n": 2**64}])],
    "a field named like a system column": [req([{"_id": "mine"}])],
    "a key twice in one object": [req([{}], FORMAT_OBJECT, body=b'{"n": 1, "n": 2}')],
    "ids from the request": [req([{"n": 1}], ids=["given-1"])],
    "a replay": [req([{"n": 1}], replay=True)],
    "a count that disagrees with the body": [
        BufferedRequest(NOW_US, BASE, "clicks", "web", 2, FORMAT_ARRAY, b'[{"n": 1}]')
    ],
}


@pytest.mark.parametrize("batch", DECLINE.values(), ids=DECLINE.keys())
def test_the_arrow_path_declines_what_write_decides_event_by_event(
    tmp_path: Path, batch: Any
) -> None:
    sink = open_lake(tmp_path)
    sink.write(expand_events(req(SETTLE)), checkpoint("lake", {"seg": 0}))
    before = files(tmp_path)
    assert sink.write_requests(batch, checkpoint("lake", {"seg": 1})) is None
    assert files(tmp_path) == before  # declined: nothing written, nothing committed


def test_the_same_request_twice_in_a_batch_is_declined(tmp_path: Path) -> None:
    sink = open_lake(tmp_path)
    sink.write(expand_events(req(SETTLE)), checkpoint("lake", {"seg": 0}))
    twice = req([{"n": 1}])
    assert sink.write_requests([twice, twice], checkpoint("lake", {"seg": 1})) is None


def test_a_stream_with_a_time_field_or_unsettled_declared_types_is_declined(
    tmp_path: Path,
) -> None:
    timed = open_lake(tmp_path / "timed", streams={"clicks": {"time_field": "n"}})
    timed.write(expand_events(req(SETTLE)), checkpoint("lake", {"seg": 0}))
    assert timed.write_requests([req([{"n": 1}])], checkpoint("lake", {"seg": 1})) is None
    declared = open_lake(tmp_path / "declared", streams={"clicks": {"fields": {"z": "int64"}}})
    assert declared.write_requests([req([{"z": 1}])], checkpoint("lake", {"seg": 0})) is None
    declared.write(expand_events(req([{"z": 1}])), checkpoint("lake", {"seg": 1}))
    assert declared.write_requests([req([{"z": 2}])], checkpoint("lake", {"seg": 2})) is not None


def test_body_columns_derive_ids_and_times_as_expand_events_does() -> None:
    requests = [req([{"n": 1}, {"n": 2}]), req([{"n": 3}], FORMAT_OBJECT, at=NOW_US + 5)]
    import pyarrow as pa

    built = body_columns(requests, {"n": pa.int64()})
    assert built is not None
    events = [e for r in requests for e in expand_events(r)]
    assert built.ids == [e.id for e in events]
    assert built.received_at_us == [e.received_at_us for e in events]
    assert built.table.column("n").to_pylist() == [1, 2, 3]
    ignoring = body_columns([req([{"n": 1, "other": "x"}])], {"n": pa.int64()}, unexpected="ignore")
    assert ignoring is not None and ignoring.table.column_names == ["n"]
