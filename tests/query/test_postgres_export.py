"""``headrace export --sink`` of a postgres sink's table (``query.postgres``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from headrace.query.postgres import PostgresExport
from headrace.sinks.postgres.config import PostgresConfig
from headrace.sinks.postgres.sink import PostgresSink
from headrace.storage.state import Checkpoint
from headrace.types import Event
from support.pgschema import DSN, throwaway_schema


def test_header_names_with_line_breaks_are_quoted(tmp_path: Path) -> None:
    # a bare CR in a column's name must not end the header row for a CSV reader
    with throwaway_schema("export ") as schema:
        columns = {"a\rb": "text", "c\nd": "text", 'e"f,': "text"}
        config = PostgresConfig.model_validate({
            "type": "postgres", "inputs": ["s"], "dsn": DSN, "schema": schema,
            "table": "t", "columns": columns,
        })  # fmt: skip
        sink = PostgresSink("pg", config, tmp_path)
        sink.open()
        data = {name: f"v{i}" for i, name in enumerate(columns)}
        assert sink.write([Event("ev-1", "s", "s", 1, data)], Checkpoint("pg")).failed == []
        sink.close()
        out = io.BytesIO()
        with PostgresExport(config) as export:
            assert export.write_csv(out) == 1
    text = out.getvalue().decode()
    assert list(csv.reader(io.StringIO(text, newline=""))) == [list(columns), ["v0", "v1", "v2"]]
    assert text.endswith("\n") and "\r\n" not in text
