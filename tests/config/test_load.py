"""Tests for reading pipeline files: ``parse_pipeline``, ``load_pipeline`` and ``headrace validate``."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from headrace.cli import main
from headrace.config.base import Limits
from headrace.config.buffers import LocalBuffer
from headrace.config.load import format_path, load_pipeline, parse_pipeline
from headrace.config.models import DEFAULT_SINK_ID, DEFAULT_SOURCE_ID, Pipeline, default_pipeline
from headrace.config.sources import HttpSource
from headrace.errors import ConfigError, ConfigProblem
from headrace.sinks.lake.config import LakeConfig

MINIMAL = """\
sources:
  web:
    type: http
sinks:
  lake:
    type: lake
    inputs: [web]
"""


def yaml_text(text: str) -> str:
    """Dedent a triple-quoted YAML snippet written inline in a test."""
    return textwrap.dedent(text).lstrip("\n")


def parse(text: str, env: Mapping[str, str] | None = None, file: str = "p.yaml") -> Pipeline:
    """Parse with an explicit (empty by default) environment so the host's variables never leak in."""
    return parse_pipeline(yaml_text(text), file=file, env={} if env is None else env)


def problems_of(text: str, env: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    """The problems ``parse_pipeline`` reports for ``text``; fails the test if it parses."""
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    assert info.value.problems, "a ConfigError must carry at least one problem"
    return info.value.problems


def raw_problems_of(text: str, file: str | None = None) -> list[ConfigProblem]:
    """The problems of ``text`` taken exactly as given (no dedent), with an empty environment."""
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, file=file, env={})
    return info.value.problems


def by_path(problems: list[ConfigProblem]) -> dict[str, ConfigProblem]:
    """Problems keyed by path; fails on two problems at one path so tests stay unambiguous."""
    keyed = {p.path: p for p in problems}
    assert len(keyed) == len(problems), [str(p) for p in problems]
    return keyed


def paths_of(problems: list[ConfigProblem]) -> set[str]:
    return {p.path for p in problems}


# --- a valid pipeline ------------------------------------------------------------------------


def test_valid_pipeline_parses_into_typed_models_with_durations_and_sizes() -> None:
    pipeline = parse(
        """
        sources:
          web:
            type: http
            path: /webhooks/{stream}
            format: ndjson
            id_header: webhook-id
            success_status: 200
            limits:
              max_body_bytes: 1MiB
              max_events: 50
          api:
            type: http
        sinks:
          lake:
            type: lake
            inputs: [web, api]
            path: /var/lake
            streams:
              clicks:
                time_field: ts
                time_format: epoch_ms
                fields: {ts: int64, user: string}
            batch:
              max_events: 500
              max_bytes: 10MiB
              max_age: 500ms
            retry:
              initial_backoff: 250ms
              max_backoff: 2m
              max_attempts: 5
            compaction:
              enabled: false
              small_file_bytes: 16MB
              interval: 1.5s
              grace: 2h
        buffer:
          max_bytes: 2GiB
          min_free_bytes: 512KiB
          segment_bytes: 1024
          segment_age: 30
          retention: 7d
        limits:
          max_decompressed_bytes: 10MiB
          max_depth: 8
        """
    )
    assert isinstance(pipeline, Pipeline)
    assert set(pipeline.sources) == {"web", "api"}
    web = pipeline.sources["web"]
    assert isinstance(web, HttpSource)
    assert web.path == "/webhooks/{stream}"
    assert web.format == "ndjson"
    assert web.id_header == "webhook-id"
    assert web.success_status == 200
    assert web.limits == Limits(max_body_bytes=1024**2, max_events=50)
    assert pipeline.limits_for(web).max_events == 50
    assert pipeline.limits_for(pipeline.sources["api"]) is pipeline.limits

    lake = pipeline.sinks["lake"]
    assert isinstance(lake, LakeConfig)
    assert lake.inputs == ["web", "api"]
    assert lake.path == "/var/lake"
    assert lake.schema_for("clicks").time_field == "ts"
    assert lake.schema_for("clicks").fields == {"ts": "int64", "user": "string"}
    assert lake.batch.max_events == 500
    assert lake.batch.max_bytes == 10 * 1024**2
    assert lake.batch.max_age == pytest.approx(0.5)
    assert lake.retry.initial_backoff == pytest.approx(0.25)
    assert lake.retry.max_backoff == pytest.approx(120.0)
    assert lake.retry.max_attempts == 5
    assert lake.compaction.enabled is False
    assert lake.compaction.small_file_bytes == 16_000_000
    assert lake.compaction.interval == pytest.approx(1.5)
    assert lake.compaction.grace == pytest.approx(7200.0)

    assert pipeline.buffer == LocalBuffer(
        max_bytes=2 * 1024**3,
        min_free_bytes=512 * 1024,
        segment_bytes=1024,
        segment_age=30.0,
        retention=7 * 86400.0,
    )
    assert pipeline.limits.max_decompressed_bytes == 10 * 1024**2
    assert pipeline.limits.max_depth == 8
    assert pipeline.transforms == {}
    assert pipeline.sinks_for_source("web") == ["lake"]


def test_minimal_pipeline_gets_default_buffer_and_limits() -> None:
    pipeline = parse(MINIMAL)
    assert pipeline.buffer == LocalBuffer()
    assert pipeline.limits == Limits()
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    assert source.format == "auto"
    assert source.success_status == 202
    assert source.path is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0), ("3", 3.0)],
)
def test_durations_are_parsed_to_seconds(text: str, seconds: float) -> None:
    pipeline = parse(MINIMAL + f"buffer:\n  segment_age: {text}\n")
    assert pipeline.buffer.segment_age == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MiB", 10 * 1024**2),
        ("10mib", 10 * 1024**2),
        ("512KiB", 512 * 1024),
        ("2GiB", 2 * 1024**3),
        ("1TiB", 1024**4),
        ("3kb", 3000),
        ("5MB", 5_000_000),
        ("1.5KiB", 1536),
        ("100b", 100),
        ("4096", 4096),
    ],
)
def test_sizes_are_parsed_to_bytes(text: str, size: int) -> None:
    pipeline = parse(MINIMAL + f"buffer:\n  segment_bytes: {text}\n")
    assert pipeline.buffer.segment_bytes == size


def test_fractional_sizes_are_not_truncated_by_float_rounding() -> None:
    pipeline = parse(MINIMAL + "buffer:\n  segment_bytes: 2.01KB\n")
    assert pipeline.buffer.segment_bytes == 2010


@pytest.mark.parametrize("text", ["soon", "5 minutes", "10S", "-1s", "1.2.3s"])
def test_invalid_duration_is_reported_at_its_path(text: str) -> None:
    problems = problems_of(MINIMAL + f"buffer:\n  segment_age: {text}\n")
    (problem,) = problems
    assert problem.path == "buffer.segment_age"
    assert "is not a duration" in problem.message
    assert problem.line == 9


@pytest.mark.parametrize("text", ["lots", "10 MiBs", "1PiB", "-5MB"])
def test_invalid_size_is_reported_at_its_path(text: str) -> None:
    (problem,) = problems_of(MINIMAL + f"buffer:\n  max_bytes: {text}\n")
    assert problem.path == "buffer.max_bytes"
    assert "is not a size" in problem.message
    assert problem.line == 9


def test_default_pipeline_is_valid() -> None:
    pipeline = default_pipeline()
    assert isinstance(pipeline, Pipeline)
    source = pipeline.sources[DEFAULT_SOURCE_ID]
    assert isinstance(source, HttpSource)
    assert source.path == "/v1/streams/{stream}/events"
    assert pipeline.sinks[DEFAULT_SINK_ID].inputs == [DEFAULT_SOURCE_ID]
    assert pipeline.sinks_for_source(DEFAULT_SOURCE_ID) == [DEFAULT_SINK_ID]


def test_default_pipeline_written_as_yaml_passes_every_check() -> None:
    pipeline = parse(
        f"""
        sources:
          {DEFAULT_SOURCE_ID}:
            type: http
            path: /v1/streams/{{stream}}/events
        sinks:
          {DEFAULT_SINK_ID}:
            type: lake
            inputs: [{DEFAULT_SOURCE_ID}]
        """
    )
    assert pipeline == default_pipeline()


# --- unknown keys and types ------------------------------------------------------------------


def test_unknown_top_level_key_is_reported_with_the_known_keys() -> None:
    (problem,) = problems_of("version: 2\n" + MINIMAL)
    assert problem.path == "version"
    assert problem.message.startswith("unknown key")
    for known in ("sources", "transforms", "sinks", "buffer", "limits"):
        assert known in problem.message
    assert problem.line == 1


def test_unknown_key_inside_a_source_is_reported_at_its_line() -> None:
    problems = problems_of(
        """
        sources:
          web:
            type: http
            colour: blue
        sinks:
          lake:
            type: lake
            inputs: [web]
        """
    )
    (problem,) = problems
    assert problem.path == "sources.web.colour"
    assert problem.message.startswith("unknown key")
    assert "path" in problem.message and "id_field" in problem.message
    assert problem.line == 4


def test_unknown_key_nested_inside_a_sink_setting_is_reported() -> None:
    (problem,) = problems_of(
        MINIMAL
        + """\
    batch:
      max_age: 1s
      flush_every: 3
"""
    )
    assert problem.path == "sinks.lake.batch.flush_every"
    assert problem.message.startswith("unknown key")
    assert problem.line == 10


@pytest.mark.parametrize("section", ["buffer", "limits"])
def test_unknown_key_in_buffer_and_limits_is_reported(section: str) -> None:
    (problem,) = problems_of(MINIMAL + f"{section}:\n  nonsense: 1\n")
    assert problem.path == f"{section}.nonsense"
    assert problem.message.startswith("unknown key")
    assert problem.line == 9


def test_unknown_source_type_names_the_available_types() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              web:
                type: grpc
            sinks:
              lake:
                type: lake
                inputs: [web]
            """
        )
    )
    assert set(problems) == {"sources.web.type"}
    assert (
        problems["sources.web.type"].message
        == 'unknown source type "grpc" (available: bulk_export, http)'
    )
    assert problems["sources.web.type"].line == 3


def test_unknown_sink_type_names_the_available_types() -> None:
    (problem,) = problems_of(
        """
        sources:
          web:
            type: http
        sinks:
          pg:
            type: carrier-pigeon
            inputs: [web]
        """
    )
    assert problem.path == "sinks.pg.type"
    assert (
        problem.message
        == 'unknown sink type "carrier-pigeon" (available: dynamodb, lake, postgres, s3)'
    )
    assert problem.line == 6


def test_an_unknown_transform_type_still_counts_as_an_input() -> None:
    problems = problems_of(
        """
        sources:
          web:
            type: http
        transforms:
          sample:
            type: sample
            inputs: [web]
        sinks:
          lake:
            type: lake
            inputs: [sample]
        """
    )
    # only the transform's type is wrong: "sample" is still a valid input name and "web" is
    # consumed by the transform, so neither graph check complains
    (problem,) = problems
    assert problem.path == "transforms.sample.type"
    assert (
        problem.message
        == 'unknown transform type "sample" (available: dedupe, enrich_http, filter, python, remap)'
    )
    assert problem.line == 6


@pytest.mark.parametrize(
    ("type_line", "line"), [("", 2), ("    type:\n", 3), ("    type: null\n", 3)]
)
def test_missing_type_is_required(type_line: str, line: int) -> None:
    text = "sources:\n  web:\n" + type_line + "    path: /in\nsinks:\n"
    text += "  lake:\n    type: lake\n    inputs: [web]\n"
    (problem,) = problems_of(text)
    assert problem.path == "sources.web.type"
    assert problem.message == "required"
    assert problem.line == line  # the type key when present, else the component's key


def test_component_that_is_not_a_mapping_is_reported() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              web: http
            sinks:
              lake:
                type: lake
                inputs: [web]
            """
        )
    )
    assert set(problems) == {"sources.web"}
    assert problems["sources.web"].message == "must be a mapping with a type"
    assert problems["sources.web"].line == 2


def test_section_that_is_not_a_mapping_is_reported() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              - type: http
            sinks:
              lake:
                type: lake
                inputs: [web]
            """
        )
    )
    assert set(problems) == {"sources", "sinks.lake.inputs[0]"}
    assert problems["sources"].message == "must be a mapping of id to source"
    assert problems["sources"].line == 1


def test_missing_required_field_of_a_sink_is_reported() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              web:
                type: http
            sinks:
              lake:
                type: lake
            """
        )
    )
    assert problems["sinks.lake.inputs"].message == "required"
    assert problems["sinks.lake.inputs"].line == 5  # nearest line: the sink's own key
    assert "sources.web" in problems  # and therefore nothing consumes the source


def test_empty_inputs_list_is_rejected() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              web:
                type: http
            sinks:
              lake:
                type: lake
                inputs: []
            """
        )
    )
    assert "sinks.lake.inputs" in problems
    assert problems["sinks.lake.inputs"].line == 7


def test_invalid_component_id_is_reported() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              "bad id!":
                type: http
            sinks:
              lake:
                type: lake
                inputs: ["bad id!"]
            """
        )
    )
    assert set(problems) == {"sources.bad id!"}
    assert "ids use letters" in problems["sources.bad id!"].message
    assert problems["sources.bad id!"].line == 2


@pytest.mark.parametrize("document", ["", "# only a comment\n", "sources:\nsinks:\n"])
def test_missing_sources_and_sinks_are_required(document: str) -> None:
    problems = by_path(problems_of(document))
    assert set(problems) == {"sources", "sinks"}
    assert problems["sources"].message == "at least one is required"
    assert problems["sinks"].message == "at least one is required"


def test_out_of_range_limit_is_reported_with_pydantic_message_cleaned() -> None:
    (problem,) = problems_of(MINIMAL + "limits:\n  max_depth: 1\n  max_events: 100\n")
    assert problem.path == "limits.max_depth"
    assert "greater than or equal to 2" in problem.message
    assert problem.line == 9


def test_limits_inside_a_source_are_validated() -> None:
    (problem,) = problems_of(
        """
        sources:
          web:
            type: http
            limits:
              max_events: 0
        sinks:
          lake:
            type: lake
            inputs: [web]
        """
    )
    assert problem.path == "sources.web.limits.max_events"
    assert problem.line == 5


# --- graph checks ----------------------------------------------------------------------------


def test_bad_inputs_reference_is_reported_with_path_and_line() -> None:
    problems = problems_of(
        """
        sources:
          web:
            type: http
        sinks:
          lake:
            type: lake
            inputs:
              - web
              - clicks
        """
    )
    (problem,) = problems
    assert problem.path == "sinks.lake.inputs[1]"
    assert problem.message == 'no source or transform named "clicks"'
    assert problem.line == 9


def test_bad_inputs_reference_is_reported_even_when_the_same_sink_has_another_error() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              web:
                type: http
            sinks:
              lake:
                type: lake
                inputs: [clicks, web]
                max_columns: many
            """
        )
    )
    assert set(problems) == {"sinks.lake.inputs[0]", "sinks.lake.max_columns"}
    assert problems["sinks.lake.inputs[0]"].message == 'no source or transform named "clicks"'
    assert problems["sinks.lake.inputs[0]"].line == 7
    assert problems["sinks.lake.max_columns"].line == 8


def test_bad_inputs_reference_is_reported_even_when_the_sink_type_is_unknown() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              web:
                type: http
            sinks:
              lake:
                type: lake
                inputs: [web]
              pg:
                type: carrier-pigeon
                inputs: [clicks]
            """
        )
    )
    assert set(problems) == {"sinks.pg.type", "sinks.pg.inputs[0]"}
    assert problems["sinks.pg.inputs[0]"].line == 10


def test_source_that_is_no_sinks_input_is_an_error() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              web:
                type: http
              orphan:
                type: http
            sinks:
              lake:
                type: lake
                inputs: [web]
            """
        )
    )
    assert set(problems) == {"sources.orphan"}
    assert "is not an input of any sink" in problems["sources.orphan"].message
    assert problems["sources.orphan"].line == 4


def test_source_used_by_two_sinks_is_listed_for_both() -> None:
    pipeline = parse(
        """
        sources:
          web:
            type: http
        sinks:
          a:
            type: lake
            inputs: [web]
          b:
            type: lake
            inputs: [web]
        """
    )
    assert pipeline.sinks_for_source("web") == ["a", "b"]


@pytest.mark.parametrize(
    ("first", "second"), [("/in", "/in"), ("/in", "/in/"), ("/a/{stream}", "/a/{stream}/")]
)
def test_duplicate_source_paths_are_an_error(first: str, second: str) -> None:
    problems = by_path(
        problems_of(
            f"""
            sources:
              one:
                type: http
                path: {first}
              two:
                type: http
                path: {second}
            sinks:
              lake:
                type: lake
                inputs: [one, two]
            """
        )
    )
    assert set(problems) == {"sources.two.path"}
    assert problems["sources.two.path"].message == f'"{second}" is already the path of source "one"'
    assert problems["sources.two.path"].line == 7


@pytest.mark.parametrize(
    "path", ["/healthz", "/healthz/", "/readyz", "/metrics", "/_noop", "/_internal/x"]
)
def test_reserved_source_paths_are_rejected(path: str) -> None:
    (problem,) = problems_of(
        f"""
        sources:
          web:
            type: http
            path: {path}
        sinks:
          lake:
            type: lake
            inputs: [web]
        """
    )
    assert problem.path == "sources.web.path"
    assert problem.message == f'"{path}" is reserved by headrace'
    assert problem.line == 4


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("in", 'must start with "/"'),
        ("/v1/{id}/events", "the only path parameter is a whole segment {stream}"),
        ("/v1/x{stream}", "the only path parameter is a whole segment {stream}"),
    ],
)
def test_malformed_source_paths_are_rejected(path: str, message: str) -> None:
    (problem,) = problems_of(
        f"""
        sources:
          web:
            type: http
            path: "{path}"
        sinks:
          lake:
            type: lake
            inputs: [web]
        """
    )
    assert problem.path == "sources.web.path"
    assert problem.message == message


@pytest.mark.parametrize("path", ["/healthzz", "/v1/healthz", "/metrics-in", "/a_b"])
def test_paths_that_only_resemble_reserved_ones_are_allowed(path: str) -> None:
    pipeline = parse(
        f"""
        sources:
          web:
            type: http
            path: {path}
        sinks:
          lake:
            type: lake
            inputs: [web]
        """
    )
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    assert source.path == path


# --- every error at once ---------------------------------------------------------------------

MANY_ERRORS = """\
version: 2
sources:
  web:
    type: http
    path: /healthz
    colour: blue
  orphan:
    type: http
  notype:
    path: /x
  grpc:
    type: grpc
transforms:
  t1:
    type: sample
sinks:
  lake:
    type: lake
    inputs:
      - web
      - clicks
    batch:
      max_age: soon
  other:
    type: lake
    inputs: [t1, nowhere]
    extra: 1
buffer:
  max_bytes: lots
limits:
  max_depth: 1
"""


def test_several_errors_are_reported_together_with_their_paths() -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline(MANY_ERRORS, file="many.yaml", env={})
    problems = info.value.problems
    assert paths_of(problems) == {
        "version",
        "sources.web.path",
        "sources.web.colour",
        "sources.notype.type",
        "sources.grpc.type",
        "transforms.t1.type",
        "sinks.lake.batch.max_age",
        "sinks.lake.inputs[1]",
        "sinks.other.extra",
        "sinks.other.inputs[1]",
        "buffer.max_bytes",
        "limits.max_depth",
        "sources.orphan",
        "sources.notype",
        "sources.grpc",
    }
    assert all(p.file == "many.yaml" for p in problems)
    # the exception text lists every problem, one per line
    assert str(info.value).splitlines() == [str(p) for p in problems]


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("version", 1),
        ("sources.web.path", 5),
        ("sources.web.colour", 6),
        ("sources.orphan", 7),
        ("sources.notype.type", 9),
        ("sources.notype", 9),
        ("sources.grpc.type", 12),
        ("transforms.t1.type", 15),
        ("sinks.lake.inputs[1]", 21),
        ("sinks.lake.batch.max_age", 23),
        ("sinks.other.inputs[1]", 26),
        ("sinks.other.extra", 27),
        ("buffer.max_bytes", 29),
        ("limits.max_depth", 31),
    ],
)
def test_problem_line_numbers_point_at_the_offending_line(path: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline(MANY_ERRORS, file="many.yaml", env={})
    lines = {p.path: p.line for p in info.value.problems}
    assert lines[path] == line


def test_problem_string_names_file_line_and_path() -> None:
    text = yaml_text(
        """
        sources:
          clicks:
            type: http
          web:
            type: http
        sinks:
          lake:
            type: lake
            inputs:
              - clicks
              - web
              - click
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, file="file.yaml", env={})
    (problem,) = info.value.problems
    assert problem == ConfigProblem(
        "sinks.lake.inputs[2]", 'no source or transform named "click"', 12, "file.yaml"
    )
    assert (
        str(problem) == 'file.yaml:12: sinks.lake.inputs[2]: no source or transform named "click"'
    )


def test_problem_string_without_a_file_uses_the_line_alone() -> None:
    assert str(ConfigProblem("sinks.lake", "bad", 3)) == "line 3: sinks.lake: bad"
    assert str(ConfigProblem("sinks.lake", "bad", None, "f.yaml")) == "f.yaml: sinks.lake: bad"
    assert str(ConfigProblem("", "not valid YAML: x", 2, "f.yaml")) == "f.yaml:2: not valid YAML: x"
    assert str(ConfigProblem("sinks", "bad")) == "sinks: bad"


def test_format_path_joins_keys_and_indexes() -> None:
    assert format_path(("sinks", "lake", "inputs", 0)) == "sinks.lake.inputs[0]"
    assert format_path(()) == ""
    assert format_path(("a", 1, 2, "b")) == "a[1][2].b"


# --- duplicate keys --------------------------------------------------------------------------


def test_duplicate_component_id_is_reported_at_the_second_occurrence() -> None:
    (problem,) = problems_of(
        """
        sources:
          web:
            type: http
        sinks:
          lake:
            type: lake
            inputs: [web]
          lake:
            type: lake
            inputs: [web]
        """
    )
    assert problem.path == "sinks.lake"
    assert problem.message == "key appears twice"
    assert problem.line == 8


def test_duplicate_top_level_and_nested_keys_are_all_reported() -> None:
    problems = by_path(
        problems_of(
            """
            sources:
              web:
                type: http
                path: /a
                path: /b
            sinks:
              lake:
                type: lake
                inputs: [web]
            sinks:
              lake:
                type: lake
                inputs: [web]
            """
        )
    )
    assert set(problems) == {"sources.web.path", "sinks"}
    assert problems["sources.web.path"].line == 5
    assert problems["sinks"].line == 10
    assert all(p.message == "key appears twice" for p in problems.values())


def test_duplicate_key_is_reported_together_with_the_other_errors() -> None:
    problems = problems_of(
        """
        version: 2
        sources:
          web:
            type: http
            type: http
        sinks:
          lake:
            type: lake
            inputs: [clicks]
        """
    )
    assert {"version", "sources.web.type", "sinks.lake.inputs[0]"} <= paths_of(problems)


# --- environment interpolation ---------------------------------------------------------------


def _with_path(value: str) -> str:
    return yaml_text(
        f"""
        sources:
          web:
            type: http
            path: "{value}"
        sinks:
          lake:
            type: lake
            inputs: [web]
        """
    )


def _path_after_parsing(value: str, env: Mapping[str, str]) -> str | None:
    pipeline = parse_pipeline(_with_path(value), env=env)
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    return source.path


def test_env_variable_is_substituted() -> None:
    assert _path_after_parsing("/in/${TEAM}/x", {"TEAM": "growth"}) == "/in/growth/x"


def test_several_env_variables_in_one_value_are_substituted() -> None:
    env = {"A": "one", "B": "two"}
    assert _path_after_parsing("/${A}/${B}/${A}", env) == "/one/two/one"


def test_missing_env_variable_is_reported_with_path_and_line_alongside_other_errors() -> None:
    text = yaml_text(
        """
        sources:
          web:
            type: http
            path: /in/${TEAM}
            id_field: ${ID_FIELD}
        sinks:
          lake:
            type: lake
            inputs: [web, clicks]
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, file="env.yaml", env={"TEAM": "growth"})
    problems = by_path(info.value.problems)
    assert set(problems) == {"sources.web.id_field", "sinks.lake.inputs[1]"}
    assert problems["sources.web.id_field"].message == "environment variable ID_FIELD is not set"
    assert problems["sources.web.id_field"].line == 5
    assert str(problems["sources.web.id_field"]) == (
        "env.yaml:5: sources.web.id_field: environment variable ID_FIELD is not set"
    )


def test_missing_env_variable_inside_a_list_is_reported_at_its_index() -> None:
    problems = problems_of(
        """
        sources:
          web:
            type: http
        sinks:
          lake:
            type: lake
            inputs:
              - web
              - ${EXTRA}
        """
    )
    # the missing variable is one problem; the emptied input is then not a known source either
    assert [(p.path, p.message, p.line) for p in problems] == [
        ("sinks.lake.inputs[1]", "environment variable EXTRA is not set", 9),
        ("sinks.lake.inputs[1]", 'no source or transform named ""', 9),
    ]


def test_env_default_is_used_when_the_variable_is_unset() -> None:
    assert _path_after_parsing("${IN_PATH:-/default}", {}) == "/default"


def test_env_value_wins_over_the_default() -> None:
    assert _path_after_parsing("${IN_PATH:-/default}", {"IN_PATH": "/set"}) == "/set"


def test_empty_env_default_is_allowed() -> None:
    assert _path_after_parsing("/in${SUFFIX:-}", {}) == "/in"


def test_env_default_is_used_when_the_variable_is_empty() -> None:
    assert _path_after_parsing("${IN_PATH:-/default}", {"IN_PATH": ""}) == "/default"


def test_double_dollar_escapes_a_dollar() -> None:
    assert _path_after_parsing("/price$$5", {}) == "/price$5"


def test_double_dollar_before_a_brace_keeps_the_reference_literal() -> None:
    pipeline = parse_pipeline(
        MINIMAL.replace("type: http", "type: http\n    success_body: $${TOKEN}"), env={}
    )
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    assert source.success_body == "${TOKEN}"


def test_substituted_values_are_not_expanded_again() -> None:
    pipeline = parse_pipeline(
        MINIMAL.replace("type: http", "type: http\n    success_body: ${BODY}"),
        env={"BODY": "${SECRET} and $$"},
    )
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    assert source.success_body == "${SECRET} and $$"


def test_lone_dollars_and_malformed_references_are_left_alone() -> None:
    pipeline = parse_pipeline(
        MINIMAL.replace("type: http", "type: http\n    success_body: 'a$b ${1X} ${OPEN $'"),
        env={},
    )
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    assert source.success_body == "a$b ${1X} ${OPEN $"


def test_env_value_is_coerced_to_the_field_type() -> None:
    pipeline = parse_pipeline(
        MINIMAL.replace("type: http", "type: http\n    success_status: ${STATUS}")
        + "buffer:\n  max_bytes: ${BUFFER_SIZE}\n",
        env={"STATUS": "200", "BUFFER_SIZE": "1GiB"},
    )
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    assert source.success_status == 200
    assert pipeline.buffer.max_bytes == 1024**3


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_TEST_IN_PATH", "/from-env")
    pipeline = parse_pipeline(_with_path("${HEADRACE_TEST_IN_PATH}"))
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    assert source.path == "/from-env"


def test_env_mapping_given_explicitly_replaces_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADRACE_TEST_IN_PATH", "/from-env")
    with pytest.raises(ConfigError) as info:
        parse_pipeline(_with_path("${HEADRACE_TEST_IN_PATH}"), env={})
    messages = [str(p) for p in info.value.problems]
    assert (
        messages[0]
        == "line 4: sources.web.path: environment variable HEADRACE_TEST_IN_PATH is not set"
    )


# --- malformed documents ---------------------------------------------------------------------


def test_invalid_yaml_is_reported_with_its_line() -> None:
    text = "sources:\n  web:\n    type: http\n    path: [/a\nsinks: {}\n"
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, file="broken.yaml", env={})
    (problem,) = info.value.problems
    assert problem.path == ""
    assert problem.message.startswith("not valid YAML:")
    assert problem.file == "broken.yaml"
    assert problem.line == 5
    assert str(problem).startswith("broken.yaml:5: not valid YAML:")


def test_bad_indentation_is_reported_with_its_line() -> None:
    text = "sources:\n  web:\n    type: http\n   path: /a\n"
    (problem,) = raw_problems_of(text)
    assert problem.message.startswith("not valid YAML:")
    assert problem.line == 4


def test_several_yaml_documents_are_rejected() -> None:
    text = "a: 1\n---\nb: 2\n"
    (problem,) = raw_problems_of(text)
    assert problem.message.startswith("not valid YAML:")
    assert problem.line == 2


def test_python_tags_are_refused_as_invalid_yaml() -> None:
    text = "sources: !!python/object/apply:os.system ['true']\n"
    (problem,) = raw_problems_of(text)
    assert problem.message.startswith("not valid YAML:")
    assert problem.line == 1


def test_control_characters_are_reported_as_invalid_yaml_not_a_crash() -> None:
    text = MINIMAL + "\x07\n"
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, file="ctl.yaml", env={})
    assert info.value.problems[0].message.startswith("not valid YAML")


def test_recursive_yaml_alias_is_a_config_error_not_a_crash() -> None:
    text = MINIMAL + "limits: &loop\n  max_depth: [*loop]\n"
    with pytest.raises(ConfigError):
        parse_pipeline(text, env={})


@pytest.mark.parametrize("text", ["- sources\n- sinks\n", "just a string\n", "42\n"])
def test_document_that_is_not_a_mapping_is_rejected(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, file="list.yaml", env={})
    assert info.value.problems == [
        ConfigProblem("", "the pipeline file must be a mapping", 1, "list.yaml")
    ]


# --- load_pipeline ---------------------------------------------------------------------------


def test_load_pipeline_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(MINIMAL.replace("type: http", "type: http\n    path: ${IN}"), encoding="utf-8")
    pipeline = load_pipeline(path, env={"IN": "/ingest"})
    source = pipeline.sources["web"]
    assert isinstance(source, HttpSource)
    assert source.path == "/ingest"


def test_load_pipeline_accepts_a_string_path(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_pipeline(str(path), env={}).sinks_for_source("web") == ["lake"]


def test_load_pipeline_problems_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL.replace("inputs: [web]", "inputs: [web, click]"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, env={})
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert str(problem) == f'{path}:7: sinks.lake.inputs[1]: no source or transform named "click"'


def test_load_pipeline_on_a_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, env={})
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert problem.line is None
    assert problem.message.startswith("cannot read")
    assert str(path) in str(info.value)


def test_load_pipeline_on_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline(tmp_path, env={})
    assert info.value.problems[0].file == str(tmp_path)


def test_load_pipeline_on_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, env={})
    assert info.value.problems == [ConfigProblem("", "not UTF-8 text", None, str(path))]


# --- headrace validate -----------------------------------------------------------------------


def test_cli_validate_bad_file_exits_1_and_prints_every_problem_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(MANY_ERRORS, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    expected = info.value.problems

    result = CliRunner().invoke(main, ["validate", str(path)])

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert sorted(lines[:-1]) == sorted(f"error: {p}" for p in expected)
    assert lines[-1] == f"{path}: {len(expected)} problem(s)"
    # printed in file order
    printed_lines = [p.line or 0 for p in sorted(expected, key=lambda p: (p.line or 0, p.path))]
    assert printed_lines == sorted(printed_lines)
    assert lines[:-1] == [
        f"error: {p}" for p in sorted(expected, key=lambda p: (p.line or 0, p.path))
    ]


def test_cli_validate_good_file_exits_0_with_an_ok_line(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(MINIMAL, encoding="utf-8")

    result = CliRunner().invoke(main, ["validate", str(path)])

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout == f"{path}: ok (1 source(s), 0 transform(s), 1 sink(s))\n"


def test_cli_validate_missing_file_exits_1_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"

    result = CliRunner().invoke(main, ["validate", str(path)])

    assert result.exit_code == 1
    assert f"error: {path}: cannot read" in result.stderr
    assert result.stderr.splitlines()[-1] == f"{path}: 1 problem(s)"


@pytest.mark.parametrize(
    ("sinks", "message"),
    [
        ("  lake: {type: lake, inputs: [web]}", 'no sink named "table"'),
        (
            "  lake: {type: lake, inputs: [web]}\n"
            "  table: {type: postgres, inputs: [web], table: hits, columns: {pagePath: text}}",
            "is a postgres sink; GET reads a lake or dynamodb sink",
        ),
        (
            "  table: {type: dynamodb, inputs: [web], table: hits, partition_key: {name: pagePath}}",
            "has no sort_key",
        ),
        (
            "  lake: {type: lake, inputs: [web]}\n"
            "  table: {type: dynamodb, inputs: [other], table: hits,"
            " partition_key: {name: pagePath}, sort_key: {name: timestamp, type: N}}",
            'does not store the events of "web"',
        ),
    ],
)
def test_a_read_sink_must_be_readable_and_store_the_source(sinks: str, message: str) -> None:
    text = (
        "sources:\n  web: {type: http, path: /hits, read: {sink: table}}\n"
        "  other: {type: http}\nsinks:\n" + sinks + "\n  rest: {type: lake, inputs: [other]}\n"
    )
    problems = raw_problems_of(text, file="p.yaml")
    assert [(p.path, p.line) for p in problems] == [("sources.web.read.sink", 2)], problems
    assert message in problems[0].message
