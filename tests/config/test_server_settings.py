"""The ``server:`` section of the pipeline file (``config/server.py``): defaults, sizes and
durations, and errors that name the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from headrace.cli import main
from headrace.config.load import parse_pipeline
from headrace.config.server import ServerSettings
from headrace.errors import ConfigError

BASE = """\
sources:
  web: {type: http}
sinks:
  lake: {type: lake, inputs: [web]}
"""


def with_server(section: str) -> str:
    return BASE + "server:\n" + textwrap.indent(textwrap.dedent(section).strip(), "  ") + "\n"


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, file="p.yaml", env={})
    return {p.path: p.message for p in info.value.problems}


def test_defaults_are_those_of_common_servers() -> None:
    settings = parse_pipeline(BASE, env={}).server
    assert settings == ServerSettings()
    assert (settings.max_headers, settings.max_header_bytes, settings.max_url_bytes) == (
        100, 32 * 1024, 8 * 1024,
    )  # fmt: skip
    assert (settings.head_timeout, settings.keepalive_timeout, settings.max_connections) == (
        10.0, 5.0, 1000,
    )  # fmt: skip
    assert (settings.min_body_rate, settings.body_grace) == (240, 10.0)


def test_sizes_and_durations_are_read_like_every_other_section() -> None:
    settings = parse_pipeline(with_server("""
        max_url_bytes: 4KiB
        max_headers: 50
        max_header_bytes: 16KiB
        head_timeout: 2500ms
        min_body_rate: 1KiB
        body_grace: 30s
        keepalive_timeout: 1m
        max_connections: 200
    """), env={}).server  # fmt: skip
    assert settings.max_url_bytes == 4096 and settings.max_header_bytes == 16384
    assert settings.head_timeout == 2.5 and settings.keepalive_timeout == 60.0
    assert (settings.min_body_rate, settings.body_grace) == (1024, 30.0)
    assert (settings.max_headers, settings.max_connections) == (50, 200)


def test_every_bad_field_is_named() -> None:
    found = problems(with_server("""
        max_headers: 2
        max_header_bytes: 64
        max_url_bytes: lots
        head_timeout: 0s
        body_grace: soon
        max_connections: 0
        keepalive: 5s
    """))  # fmt: skip
    assert set(found) == {
        "server.max_headers", "server.max_header_bytes", "server.max_url_bytes",
        "server.head_timeout", "server.body_grace", "server.max_connections", "server.keepalive",
    }, found  # fmt: skip
    assert "not a size" in found["server.max_url_bytes"]
    assert "not a duration" in found["server.body_grace"]


def test_a_zero_minimum_body_rate_turns_it_off() -> None:
    assert parse_pipeline(with_server("min_body_rate: 0"), env={}).server.min_body_rate == 0


def test_validate_reports_the_field_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(with_server("max_headers: lots"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "p.yaml:6" in result.output and "server.max_headers" in result.output, result.output
