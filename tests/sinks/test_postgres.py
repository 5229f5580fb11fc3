"""The PostgreSQL sink against the real server on 127.0.0.1:5432."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from headrace.config.models import PostgresSink as PostgresConfig
from headrace.errors import TransientSinkError
from headrace.runtime.state import Checkpoint
from headrace.sinks.postgres import PostgresSink
from headrace.types import Event

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"hr test {uuid.uuid4().hex[:8]}"  # a space: names are always quoted
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name))
        )


def sink(schema: str, data_dir: Path, **config: Any) -> PostgresSink:
    settings = {
        "type": "postgres",
        "inputs": ["s"],
        "dsn": DSN,
        "schema": schema,
        "table": "impressions",
        **config,
    }
    opened = PostgresSink("pg", PostgresConfig.model_validate(settings), data_dir)
    opened.open()
    return opened


def event(n: int, /, **data: Any) -> Event:
    return Event(f"ev-{n}", "s", "s", 1_763_800_000_000_000 + n, data)


def rows(schema: str, table: str = "impressions", columns: str = "*") -> list[tuple[Any, ...]]:
    with psycopg.connect(DSN) as conn:
        query = psycopg.sql.SQL("SELECT {} FROM {} ORDER BY _event_id").format(
            psycopg.sql.SQL(columns), psycopg.sql.Identifier(schema, table)
        )
        return conn.execute(query).fetchall()


def test_redelivered_events_add_no_rows_and_extras_are_kept(schema: str, data_dir: Path) -> None:
    pg = sink(schema, data_dir, columns={"key": "text", "time": "bigint"})
    batch = [event(1, key="u1", time=1, extra={"a": 1}), event(2, key="u2", time=2)]
    assert pg.write(batch, Checkpoint("pg")).failed == []
    assert pg.write(batch, Checkpoint("pg")).failed == []  # a crash-redelivery of the same ids
    assert rows(schema, columns='"_event_id", "key", "time", "_extra"') == [
        ("ev-1", "u1", 1, {"extra": {"a": 1}}), ("ev-2", "u2", 2, None),
    ]  # fmt: skip


def test_merge_keeps_one_row_per_key_and_can_update(schema: str, data_dir: Path) -> None:
    pg = sink(
        schema,
        data_dir,
        columns={"key": "text", "treatment": "text"},
        write_mode="merge",
        dedupe_key=["key"],
    )
    pg.write(
        [event(1, key="u1", treatment="on"), event(2, key="u1", treatment="on")], Checkpoint("pg")
    )
    pg.write([event(3, key="u1", treatment="off")], Checkpoint("pg"))
    assert rows(schema, columns='"key", "treatment"') == [("u1", "on")]
    pg.close()
    updating = sink(schema, data_dir, columns={"key": "text", "treatment": "text"}, write_mode="merge",
                    dedupe_key=["key"], on_conflict="update")  # fmt: skip
    updating.write(
        [event(4, key="u1", treatment="off"), event(5, key="u1", treatment="off2")],
        Checkpoint("pg"),
    )
    assert rows(schema, columns='"key", "treatment"') == [("u1", "off2")]


def test_a_refused_value_fails_alone(schema: str, data_dir: Path) -> None:
    pg = sink(schema, data_dir, columns={"time": "bigint"})
    batch = (
        [event(n, time=n) for n in range(7)] + [event(7, time="not a number")] + [event(8, time=8)]
    )
    failed = pg.write(batch, Checkpoint("pg")).failed
    assert [(f.event.id, f.reason) for f in failed] == [("ev-7", "rejected_by_database")]
    assert len(rows(schema)) == 8


def test_unknown_field_policies(schema: str, data_dir: Path) -> None:
    frozen = sink(schema, data_dir, columns={"key": "text"}, unknown_fields="freeze")
    failed = frozen.write(
        [event(1, key="a"), event(2, key="b", surprise=1)], Checkpoint("pg")
    ).failed
    assert [(f.event.id, f.reason) for f in failed] == [("ev-2", "unknown_field")]
    frozen.close()
    evolving = sink(
        schema, data_dir, table="evolving", columns={"key": "text"}, unknown_fields="evolve"
    )
    evolving.write([event(3, key="c", n=3, ok=True, obj={"x": 1})], Checkpoint("pg"))
    assert rows(schema, "evolving", '"key", "n", "ok", "obj"') == [("c", 3, True, {"x": 1})]


def test_hostile_names_are_quoted(schema: str, data_dir: Path) -> None:
    table = 'imp"ressions; DROP TABLE x; --'
    column = 'user key (ü) "quoted";'
    pg = sink(schema, data_dir, table=table, columns={column: "text"})
    pg.write([event(1, **{column: "v"})], Checkpoint("pg"))
    assert rows(schema, table, psycopg.sql.Identifier(column).as_string()) == [("v",)]


def test_an_unreachable_database_is_transient(data_dir: Path) -> None:
    config = PostgresConfig.model_validate({"type": "postgres", "inputs": ["s"], "table": "t",
                                            "dsn": "host=127.0.0.1 port=1 user=postgres password=hunter2"})  # fmt: skip
    with pytest.raises(TransientSinkError) as info:
        PostgresSink("pg", config, data_dir).write([event(1)], Checkpoint("pg"))
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"table": "t" * 64}, "must be 1 to 63 bytes"),
        ({"table": "t", "columns": {"Key": "text", "key": "text"}}, "differ only in case"),
        ({"table": "t", "dedupe_key": ["nope"]}, "dedupe_key names columns not in columns"),
        ({"table": "t", "write_mode": "merge"}, "merge needs a dedupe_key"),
    ],
)
def test_names_and_keys_are_checked_by_validate(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PostgresConfig.model_validate({"type": "postgres", "inputs": ["s"], **config})


def test_export_filters_with_friendly_headers(schema: str, data_dir: Path, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from headrace.cli import main

    columns = {"key": "text", "treatment": "text", "label": "text", "time": "bigint"}
    pg = sink(schema, data_dir, columns=columns)
    batch = [event(n, key=f"u{n % 3}", treatment="on" if n % 2 else "off", label="rule, \"quoted\"",
                   time=1_700_000_000_000 + n * 1000) for n in range(30)]  # fmt: skip
    pg.write(batch, Checkpoint("pg"))
    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps({
        "sources": {"s": {"type": "http"}},
        "sinks": {"db": {"type": "postgres", "inputs": ["s"], "dsn": DSN, "schema": schema, "table": "impressions",
                         "columns": columns, "export": {"columns": {"key": "User Key", "treatment": "Treatment",
                         "label": "Rule", "time": "Time"}, "time_column": "time", "time_unit": "epoch_ms"}}},
    }))  # fmt: skip
    out = tmp_path / "export.csv"
    args = ["export", "--config", str(config), "--sink", "db", "--where", "key=u1", "--where", "treatment=on",
            "--since", "1700000005000", "--until", "1700000025000", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "User Key,Treatment,Rule,Time"
    with psycopg.connect(DSN) as conn:  # the same selection, asked by us
        expected = conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {} WHERE key = 'u1' AND treatment = 'on' "
                            "AND time >= 1700000005000 AND time < 1700000025000").format(
                psycopg.sql.Identifier(schema, "impressions"))).fetchone()  # fmt: skip
    assert expected is not None and len(lines) - 1 == expected[0] > 0
    assert all(line.startswith('u1,on,"rule, ""quoted""",') for line in lines[1:])
    hostile = CliRunner().invoke(
        main, ["export", "--config", str(config), "--sink", "db", "--where", "key=x' OR '1'='1"]
    )
    assert hostile.exit_code == 0 and hostile.output.strip() == "User Key,Treatment,Rule,Time"
    unknown = CliRunner().invoke(
        main, ["export", "--config", str(config), "--sink", "db", "--where", "nope=1"]
    )
    assert unknown.exit_code == 2 and 'no column "nope"' in unknown.output


def test_columns_declared_later_are_added_to_the_table(schema: str, data_dir: Path) -> None:
    first = sink(schema, data_dir, columns={"a": "text"})
    first.write([event(1, a="x")], Checkpoint("pg"))
    first.close()
    later = sink(
        schema,
        data_dir,
        columns={"a": "text", "b": "bigint"},
        derived={"b_at": {"source": "b", "unit": "epoch_s"}},
    )
    later.write([event(2, a="y", b=60)], Checkpoint("pg"))
    stored = rows(schema, columns='"a", "b", "b_at"')
    assert [(a, b) for a, b, _ in stored] == [("x", None), ("y", 60)]
    assert stored[1][2] is not None and stored[1][2].timestamp() == 60
