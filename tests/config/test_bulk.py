"""The bulk_export source in pipeline files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from headrace.config.bulk import BulkExportSource
from headrace.config.load import parse_pipeline
from headrace.errors import ConfigError


def test_a_bulk_only_pipeline_needs_no_sink(tmp_path: Path) -> None:
    (tmp_path / "ddl").mkdir()
    pipeline = parse_pipeline(
        """
sources:
  cs:
    type: bulk_export
    path: /webhooks/cs
    warehouse: {type: postgres, schema: crm}
    schemas: ddl
    incremental: merge
    primary_keys: {members: [id]}
""",
        file=str(tmp_path / "pipeline.yaml"),
    )
    source = pipeline.bulk_sources()["cs"]
    assert isinstance(source, BulkExportSource)
    assert source.schemas == str(tmp_path / "ddl")  # relative to the pipeline file
    assert pipeline.http_sources() == {}


def test_a_bulk_export_source_feeds_no_sink() -> None:
    with pytest.raises(
        ConfigError, match=r"sinks.lake.inputs\[0\]: \"cs\" is a bulk_export source"
    ):
        parse_pipeline(
            """
sources:
  cs: {type: bulk_export, path: /cs, warehouse: {type: duckdb}}
sinks:
  lake: {type: lake, inputs: [cs]}
"""
        )


def test_every_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(
            """
sources:
  cs:
    type: bulk_export
    path: /v1/loads
    warehouse: {type: oracle}
    unknown_table: ignore
    fetch: {allow_networks: [not-a-network], colour: red}
    tables: [members]
    primary_keys: {signatures: [id]}
"""
        )
    text = str(caught.value)
    assert "sources.cs.path" in text and "reserved" in text
    assert "sources.cs.warehouse" in text
    assert "sources.cs.unknown_table" in text
    assert "sources.cs.fetch.allow_networks" in text
    assert "sources.cs.fetch.colour" in text


def test_the_recipe_validates(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.yaml"
    run = [sys.executable, "-m", "headrace.cli"]
    assert (
        subprocess.run(
            [*run, "init", "-r", "controlshift-bulk", "-o", str(out)], timeout=60
        ).returncode
        == 0
    )
    env = {"CONTROLSHIFT_WEBHOOK_SECRET": "s", "DATABASE_URL": "postgresql:///x", "PATH": ""}
    checked = subprocess.run(
        [*run, "validate", str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    docs = subprocess.run(
        [*run, "docs", "sources", "bulk_export"], capture_output=True, text=True, timeout=60
    )
    assert "unknown_table" in docs.stdout and "allow_networks" in docs.stdout
