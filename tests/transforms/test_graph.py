"""SinkTransforms runs each transform once per batch over every event that reaches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.config.load import parse_pipeline
from headrace.errors import ConfigError
from headrace.transforms import TransformContext
from headrace.transforms.graph import SinkTransforms
from headrace.types import Event

PIPELINE = """
sources: {a: {type: http, path: /a}, b: {type: http, path: /b}}
transforms:
  tag_a: {type: remap, inputs: [a], add: {via: a}}
  once: {type: dedupe, inputs: [tag_a, b], fields: [order_id]}
sinks:
  out: {type: lake, inputs: [once]}
"""


def test_dedupe_sees_every_source_of_the_batch(tmp_path: Path) -> None:
    transforms = SinkTransforms(parse_pipeline(PIPELINE, env={}), "out")
    transforms.open(TransformContext("out", tmp_path / "state.db"))
    try:
        batch = [
            Event("e1", "s", "b", 1_000_000, {"order_id": 7}),
            Event("e2", "s", "a", 1_000_001, {"order_id": 7}),
            Event("e3", "s", "a", 1_000_002, {"order_id": 8}),
        ]
        result = transforms.apply(batch)
        assert [(e.id, e.data) for e in result.events] == [
            ("e1", {"order_id": 7}),
            ("e3", {"order_id": 8, "via": "a"}),
        ]
        assert result.dropped == 1 and transforms.dropped["once"] == 1
    finally:
        transforms.close()


def test_a_transform_cannot_have_the_name_of_a_source() -> None:
    namesake = """
    sources:
      web: {type: http, path: /web}
      clean: {type: http, path: /clean}
    transforms:
      clean: {type: remap, inputs: [web], drop: [password]}
    sinks:
      out: {type: lake, inputs: [clean]}
    """
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(namesake, env={})
    messages = {p.path: p.message for p in caught.value.problems}
    assert "has the name of a source" in messages["transforms.clean"]


RAW_PIPELINE = """
sources: {web: {type: http}}
transforms:
  to_csv: {type: python, inputs: [web], function: "firehose_functions:apache_log_to_csv"}
  again: {type: python, inputs: [to_csv], function: "firehose_functions:apache_log_to_csv"}
  tag: {type: remap, inputs: [to_csv], add: {via: csv}}
sinks:
  lines: {type: lake, inputs: [to_csv]}
  columns: {type: postgres, inputs: [to_csv], dsn: "host=127.0.0.1", table: t}
  chained: {type: lake, inputs: [again]}
  tagged: {type: lake, inputs: [tag]}
"""
LOG = '10.0.0.7 - - [22/Nov/2026:10:00:01 +0000] "GET /pricing HTTP/1.1" 200 5120'


def _run(sink: str, takes_raw: bool, tmp_path: Path) -> tuple[list[Event], list[str]]:
    transforms = SinkTransforms(parse_pipeline(RAW_PIPELINE, env={}), sink, takes_raw=takes_raw)
    transforms.open(TransformContext(sink, tmp_path / "state.db"))
    try:
        original = Event("e1", "s", "web", 1_000_000, {"line": LOG})
        result = transforms.apply([original])
        assert all(f.event == original for f in result.failed)  # dead letters keep the original
        return result.events, [f"{f.reason}: {f.error}" for f in result.failed]
    finally:
        transforms.close()


def test_bytes_reach_a_sink_that_writes_lines_and_nothing_else(tmp_path: Path) -> None:
    events, failed = _run("lines", True, tmp_path)
    assert [e.raw for e in events] == [
        b"10.0.0.7,22/Nov/2026:10:00:01 +0000,GET,/pricing,200,5120\n"
    ]
    assert failed == []

    events, failed = _run("columns", False, tmp_path)
    assert events == []
    (why,) = failed
    assert why.startswith("transform_bad_output: to_csv: returned data that is not a JSON object")
    assert "sink columns needs JSON objects" in why

    events, failed = _run("tagged", True, tmp_path)  # remap needs fields to work on
    assert events == []
    assert "to_csv: returned data" in failed[0] and "transform tag needs JSON objects" in failed[0]


def test_a_firehose_function_takes_the_bytes_of_the_one_before(tmp_path: Path) -> None:
    events, failed = _run("chained", True, tmp_path)
    # the second function is handed the CSV line and cannot parse it as JSON: its own failure
    assert events == []
    assert len(failed) == 1 and failed[0].startswith("transform_failed: again:")
