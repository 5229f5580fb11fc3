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
