"""The dashboard's reads of a postgres sink's table (``query.pg_table``), on the test server."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from headrace.query.lake import LakeQuery
from headrace.query.pg_table import PgTable
from headrace.sinks.postgres.config import PostgresConfig
from headrace.sinks.postgres.sink import PostgresSink
from headrace.storage.state import Checkpoint
from headrace.types import Event
from support.pgschema import DSN, throwaway_schema


def test_names_with_percent_signs_are_read_as_written(tmp_path: Path) -> None:
    # every query here takes parameters, and psycopg reads a "%" of its text as a placeholder,
    # inside a quoted name too: "a%%b" must not be read as the decoy "a%b"
    with throwaway_schema("100% %s ") as schema:
        config = PostgresConfig.model_validate({
            "type": "postgres", "inputs": ["s"], "dsn": DSN, "schema": schema,
            "table": "a%%b", "columns": {"x%y": "text", "%s": "text"},
        })  # fmt: skip
        sink = PostgresSink("pg", config, tmp_path)
        sink.open()
        event = Event("ev-1", "s", "s", 1_763_800_000_000_000, {"x%y": "v", "%s": "w"})
        assert sink.write([event], Checkpoint("pg")).failed == []
        sink.close()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(
                sql.Identifier(schema, "a%b"), sql.Identifier(schema, "a%%b")))  # fmt: skip
        table = PgTable(config)
        try:
            q = LakeQuery("pg", "s", since_us=0, where=[("x%y", "v")], missing_or=[("%s", "w")])
            assert [n for _, _, n in table.counts(q, 60_000_000, "%s")] == [1]
            assert table.top(q, "x%y", 5) == [{"value": "v", "count": 1}]
            assert table.cardinality(q, ["x%y", "%s"], 10) == (1, {"x%y": 1, "%s": 1})
            assert table.events(q, 5, None)["events"][0]["data"] == {"x%y": "v", "%s": "w"}
            assert table.estimated_rows() == 1
            assert table.size_bytes() > 0
        finally:
            table.close()
