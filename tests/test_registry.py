"""The registry: components by kind and type, built-ins found by walking their packages, unions
and messages built from it, and a component registered late still known to the models."""

from __future__ import annotations

from typing import Literal

import pytest

from headrace.config.base import SinkConfig
from headrace.config.load import parse_pipeline
from headrace.errors import ConfigError
from headrace.registry import UnknownComponent, components, register, unregister


def test_every_built_in_registers_itself() -> None:
    registry = components()
    assert set(registry.names("sink")) >= {"lake", "postgres", "s3", "dynamodb"}
    assert set(registry.names("transform")) >= {"python", "remap", "filter", "dedupe",
                                                 "enrich_http"}  # fmt: skip
    assert set(registry.names("authorizer")) >= {"token", "hmac", "api_key", "python", "ip_allow"}
    assert set(registry.names("warehouse")) >= {"postgres", "duckdb", "redshift"}
    lake = registry.get("sink", "lake")
    assert lake.origin == "headrace" and {"append", "read", "raw"} <= lake.capabilities
    assert lake.load().__name__ == "LakeSink"  # the implementation loads only when asked


def test_an_unknown_type_names_what_exists() -> None:
    with pytest.raises(UnknownComponent, match=r'unknown sink type "nosuch" \(available: .*lake'):
        components().get("sink", "nosuch")
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(
            "sources: {web: {type: http}}\nsinks: {out: {type: nosuch, inputs: [web]}}\n"
        )
    assert 'sinks.out.type: unknown sink type "nosuch"' in str(caught.value)


class _Late(SinkConfig):
    """A sink registered after the registry was loaded."""

    type: Literal["late_test_sink"]


def test_a_component_registered_late_is_known_to_the_pipeline_models() -> None:
    components()
    register("sink", "late_test_sink", config=_Late, implementation="builtins:object")
    pipeline = parse_pipeline(
        "sources: {web: {type: http}}\nsinks: {out: {type: late_test_sink, inputs: [web]}}\n"
    )
    try:
        assert isinstance(pipeline.sinks["out"], _Late)
        with pytest.raises(ValueError, match="registered twice"):
            register("sink", "late_test_sink", config=_Late, implementation="builtins:dict")
    finally:
        unregister("sink", "late_test_sink")


def test_write_mode_is_checked_against_the_registered_capabilities() -> None:
    text = "sources: {web: {type: http}}\nsinks:\n  lake: {type: lake, inputs: [web], write_mode: merge}\n"
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(text, file="pipeline.yaml")
    (problem,) = caught.value.problems
    assert problem.path == "sinks.lake.write_mode" and problem.line == 3
    assert problem.message == "a lake sink cannot merge (it can: append)"


def test_heavy_drivers_load_only_when_a_pipeline_uses_them() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from headrace.config.load import parse_pipeline\n"
        "parse_pipeline('sources: {web: {type: http}}\\n"
        "sinks:\\n  pg: {type: postgres, inputs: [web], table: t}\\n"
        "  s3: {type: s3, inputs: [web], path: /tmp/x, format: ndjson}\\n"
        "  dd: {type: dynamodb, inputs: [web], table: tbl, partition_key: {name: k}}\\n')\n"
        "print(sorted(m for m in ('psycopg', 'boto3', 'pyarrow', 'duckdb', 'httpx') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
