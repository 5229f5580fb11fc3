"""The PostgreSQL sink against the real server on 127.0.0.1:5432."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from headrace.errors import TerminalSinkError, TransientSinkError
from headrace.sinks.postgres.config import PostgresConfig
from headrace.sinks.postgres.sink import PostgresSink
from headrace.storage.state import Checkpoint
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
    # a field no column can be named for has nowhere to go under evolve: never dropped silently
    failed = evolving.write(
        [event(4, key="d", _private=1), event(5, key="e", **{"x" * 64: 1}), event(6, key="f")],
        Checkpoint("pg"),
    ).failed
    assert [(f.event.id, f.reason) for f in failed] == [
        ("ev-4", "unknown_field"), ("ev-5", "unknown_field"),
    ]  # fmt: skip
    assert "headrace's" in failed[0].error and "63 bytes" in failed[1].error
    assert [r[0] for r in rows(schema, "evolving", '"key"')] == ["c", "f"]


def test_a_key_too_long_for_its_index_fails_alone(schema: str, data_dir: Path) -> None:
    """PostgreSQL refuses an index entry over ~2.7 kB with program_limit_exceeded, an
    OperationalError: that is the row's fault, not the connection's, so it must not be
    retried for ever (stalling the sink) but go to the dead-letter store alone."""
    pg = sink(schema, data_dir, columns={"key": "text"}, write_mode="merge", dedupe_key=["key"])
    huge = os.urandom(4000).hex()  # 8000 characters that barely compress
    batch = [event(1, key="a"), event(2, key=huge), event(3, key="b")]
    failed = pg.write(batch, Checkpoint("pg")).failed
    assert [(f.event.id, f.reason) for f in failed] == [("ev-2", "rejected_by_database")]
    assert [r[0] for r in rows(schema, columns='"key"')] == ["a", "b"]


def test_a_sink_that_started_during_an_outage_turns_healthy_without_traffic(
    schema: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import headrace.sinks.postgres.sink as postgres_module
    from support.pgproxy import CuttableProxy

    monkeypatch.setattr(postgres_module, "PROBE_EVERY", 0.0)
    proxy = CuttableProxy(("127.0.0.1", 5432))
    proxy.cut()
    dsn = f"host=127.0.0.1 port={proxy.port} user=postgres dbname=postgres"
    pg = sink(schema, data_dir, dsn=dsn, columns={"key": "text"}, connect_timeout=2)
    try:
        assert pg.health() is not None  # open() could not reach the database
        pg.maintain()
        assert pg.health() is not None
        proxy.restore()
        pg.maintain()  # no write happens: the probe alone must clear the start-up failure
        assert pg.health() is None
        assert rows(schema) == []  # and the table was made ready by it
    finally:
        pg.close()
        proxy.cut()


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
        ({"table": "t", "columns": {"k": "text"}, "dedupe_key": ["k"]}, "needs write_mode: merge"),
        ({"table": "t", "on_conflict": "update"}, "update needs write_mode: merge"),
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
    no_sink = CliRunner().invoke(main, ["export", "--config", str(config), "--sink", "dbb"])
    assert no_sink.exit_code == 2 and 'no sink named "dbb" (sinks: db)' in no_sink.output
    far = CliRunner().invoke(
        main, ["export", "--config", str(config), "--sink", "db", "--since", "9" * 20]
    )
    assert far.exit_code == 2 and "outside the years 1 to 9999" in far.output


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


def indexes(schema: str, table: str = "impressions") -> list[str]:
    with psycopg.connect(DSN) as conn:
        found = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (schema, table),
        ).fetchall()
    return [row[0] for row in found]


def test_merge_without_an_id_index_still_stores_redeliveries_once(
    schema: str, data_dir: Path
) -> None:
    """In merge mode the key index (NULLS NOT DISTINCT) is what skips a redelivery, missing
    key values included; append mode keeps a unique index of the event id."""
    pg = sink(schema, data_dir, columns={"key": "text", "label": "text"}, write_mode="merge",
              dedupe_key=["key", "label"])  # fmt: skip
    batch = [event(1, key="u1"), event(2, key="u2", label="r"), event(3, key="u1")]
    pg.write(batch, Checkpoint("pg"))
    pg.write(batch, Checkpoint("pg"))  # redelivered
    assert rows(schema, columns='"key", "label"') == [("u1", None), ("u2", "r")]
    defs = indexes(schema)
    assert not any("(_event_id)" in d for d in defs)
    assert any("NULLS NOT DISTINCT" in d for d in defs)
    appending = sink(schema, data_dir, table="appended", columns={"key": "text"})
    appending.write([event(1, key="a")], Checkpoint("pg"))
    appending.write([event(1, key="a")], Checkpoint("pg"))
    assert len(rows(schema, "appended")) == 1
    assert any("UNIQUE" in d and "(_event_id)" in d for d in indexes(schema, "appended"))


def test_values_take_the_binary_or_the_text_form_and_read_back_equal(
    schema: str, data_dir: Path
) -> None:
    columns = {"s": "text", "n": "bigint", "i": "integer", "f": "double precision",
               "b": "boolean", "j": "jsonb", "t": "timestamptz"}  # fmt: skip
    pg = sink(schema, data_dir, columns=columns,
              derived={"at": {"source": "n", "unit": "epoch_ms"}})  # fmt: skip
    tricky = 'tab\there, newline\nand \\backslash\r, "quotes", ünï ✓'
    exact = [event(1, s=tricky, n=1_700_000_000_000, i=-5, f=1.5, b=True,
                   j={"a": [1, None, "x\ty"]}), event(2, s=None, n=None, j="just a string")]  # fmt: skip
    assert pg.write(exact, Checkpoint("pg")).failed == []  # every column binary
    loose = [event(3, s=7, n="123", i="4", f=2, b="yes", t="2026-01-02T03:04:05Z")]
    assert pg.write(loose, Checkpoint("pg")).failed == []  # text: PostgreSQL parses them
    stored = rows(schema, columns='"s", "n", "i", "f", "b", "j", "t", "at"')
    assert stored[0][:6] == (tricky, 1_700_000_000_000, -5, 1.5, True, {"a": [1, None, "x\ty"]})
    assert stored[0][7] is not None and stored[0][7].timestamp() == 1_700_000_000
    assert stored[1][:7] == (None, None, None, None, None, "just a string", None)
    assert stored[2][:6] == ("7", 123, 4, 2.0, True, None)
    assert stored[2][6] is not None and stored[2][6].isoformat() == "2026-01-02T03:04:05+00:00"


def test_a_refused_value_in_a_binary_batch_fails_alone(schema: str, data_dir: Path) -> None:
    pg = sink(schema, data_dir, columns={"n": "integer", "s": "text"})
    batch = [event(n, n=n, s=f"v{n}") for n in range(20)] + [event(20, n=1, s="nul\x00byte")]
    failed = pg.write(batch, Checkpoint("pg")).failed
    assert [(f.event.id, f.reason) for f in failed] == [("ev-20", "rejected_by_database")]
    assert len(rows(schema)) == 20


def test_a_ddl_file_makes_the_table(schema: str, data_dir: Path, tmp_path: Path) -> None:
    ddl = tmp_path / "impressions.sql"
    ddl.write_text(
        "CREATE TABLE impressions (\n"
        "  id bigserial PRIMARY KEY,\n"
        "  key character varying(8) NOT NULL,\n"
        "  amount numeric(10, 2) CHECK (amount >= 0),\n"
        "  seen timestamp without time zone\n"
        ");\n"
    )
    pg = sink(schema, data_dir, ddl=str(ddl), unknown_fields="freeze")
    batch = [event(1, key="a", amount=1.25, seen="2026-01-01 10:00:00"),
             event(2, key="b", amount=-1), event(3, key="much too long"), event(4, key="d")]  # fmt: skip
    failed = pg.write(batch, Checkpoint("pg")).failed
    assert sorted(f.event.id for f in failed) == ["ev-2", "ev-3"]  # CHECK, varchar(8)
    stored = rows(schema, columns='"id", "key", "amount"')
    assert [(key, str(amount) if amount is not None else None) for _, key, amount in stored] == [
        ("a", "1.25"), ("d", None),
    ]  # fmt: skip
    assert all(row[0] is not None for row in stored)  # the serial default applied
    pg.write(batch[:1], Checkpoint("pg"))  # a redelivery: the id index (added by headrace)
    assert len(rows(schema)) == 2


def test_a_ddl_that_makes_another_table_is_a_clear_error(
    schema: str, data_dir: Path, tmp_path: Path
) -> None:
    ddl = tmp_path / "other.sql"
    ddl.write_text("CREATE TABLE something_else (a text);")
    config = PostgresConfig.model_validate({"type": "postgres", "inputs": ["s"], "dsn": DSN,
                                            "schema": schema, "table": "impressions", "ddl": str(ddl)})  # fmt: skip
    pg = PostgresSink("pg", config, data_dir)
    with pytest.raises(TerminalSinkError, match="did not create the table"):
        pg.write([event(1, a="x")], Checkpoint("pg"))


def test_validate_reports_an_unreadable_ddl_file(tmp_path: Path) -> None:
    from headrace.config.load import load_pipeline
    from headrace.errors import ConfigError

    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "sources: {s: {type: http}}\n"
        "sinks:\n"
        "  db: {type: postgres, inputs: [s], table: t, ddl: missing.sql}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_pipeline(pipeline)
    assert "sinks.db.ddl: cannot read the ddl file" in str(info.value)
    assert "missing.sql" in str(info.value)


def test_health_follows_the_database_between_writes(schema: str, data_dir: Path) -> None:
    import headrace.sinks.postgres.sink as module
    from support.pgproxy import CuttableProxy

    proxy = CuttableProxy(("127.0.0.1", 5432))
    settings = {"type": "postgres", "inputs": ["s"], "schema": schema, "table": "t",
                "dsn": f"host=127.0.0.1 port={proxy.port} user=postgres dbname=postgres",
                "connect_timeout": 2, "pool_size": 2}  # fmt: skip
    pg = PostgresSink("pg", PostgresConfig.model_validate(settings), data_dir)
    pg.open()
    original = module.PROBE_EVERY
    module.PROBE_EVERY = 0.0
    try:
        pg.maintain()
        assert pg.health() is None
        proxy.cut()
        pg.maintain()  # nothing is being written, and still the outage shows
        assert pg.health() is not None and "PostgreSQL" in (pg.health() or "")
        proxy.restore()
        pg.maintain()
        assert pg.health() is None
        assert pg.write([event(1, a="x")], Checkpoint("pg")).failed == []
    finally:
        module.PROBE_EVERY = original
        proxy.cut()
        pg.close()


def test_export_compares_in_the_column_type_and_names_a_bad_value(
    schema: str, data_dir: Path, tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from headrace.cli import main

    columns = {"key": "text", "n": "bigint", "props": "jsonb"}
    pg = sink(schema, data_dir, columns=columns)
    pg.write([event(1, key="a", n=10, props={"x": 1}), event(2, key="b", n=9,
                                                          props={"x": 2})], Checkpoint("pg"))  # fmt: skip
    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps({
        "sources": {"s": {"type": "http"}},
        "sinks": {"db": {"type": "postgres", "inputs": ["s"], "dsn": DSN, "schema": schema,
                         "table": "impressions", "columns": columns}},
    }))  # fmt: skip

    def export(*where: str) -> Any:
        args = ["export", "--config", str(config), "--sink", "db"]
        for item in where:
            args += ["--where", item]
        return CliRunner().invoke(main, args)

    # "010" is not the text of 10, but it is the bigint 10: the column's type decides
    assert export("n=010").output.splitlines() == ["key,n,props", 'a,10,"{""x"": 1}"']
    assert export('props={"x": 2}').output.splitlines()[1:] == ['b,9,"{""x"": 2}"']
    bad = export("n=ten")
    assert bad.exit_code == 2
    assert "does not fit its column" in bad.output and "n (bigint)" in bad.output


def test_a_batch_meeting_stored_rows_halfway_is_stored_whole(schema: str, data_dir: Path) -> None:
    """The direct COPY of a large batch fails at a stored key; the staged retry must still
    have every row, including those the failed COPY never reached."""
    pg = sink(schema, data_dir, columns={"key": "text", "n": "bigint"}, write_mode="merge",
              dedupe_key=["key"])  # fmt: skip
    pg.write([event(5000, key="k5000", n=5000)], Checkpoint("pg"))
    batch = [event(n, key=f"k{n}", n=n) for n in range(20_000)]
    assert pg.write(batch, Checkpoint("pg")).failed == []
    assert len(rows(schema)) == 20_000


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_tables_whose_names_share_a_long_prefix_each_store_once(
    schema: str, data_dir: Path, mode: str
) -> None:
    """Index names are cut at 63 bytes and shared across a schema's tables: indexes are found
    by what they index, and new ones get names that cannot collide."""
    merge = {"write_mode": "merge", "dedupe_key": ["key"]} if mode == "merge" else {}
    tables = ["impressions_from_the_production_environment_eu",
              "impressions_from_the_production_environment_us",
              "ц" * 31]  # 62 bytes: a suffix would be cut off entirely  # fmt: skip
    for table in tables:
        pg = sink(schema, data_dir, table=table, columns={"key": "text"}, **merge)
        batch = [event(1, key="a"), event(2, key="b")]
        for _ in range(3):
            assert pg.write(batch, Checkpoint("pg")).failed == []
        assert len(rows(schema, table)) == 2, table
        pg.close()


def test_a_ddl_key_column_with_a_default_keeps_the_id_index(
    schema: str, data_dir: Path, tmp_path: Path
) -> None:
    ddl = tmp_path / "t.sql"
    ddl.write_text(
        "CREATE TABLE impressions (key text, seen timestamptz DEFAULT clock_timestamp());"
    )
    pg = sink(schema, data_dir, ddl=str(ddl), write_mode="merge", dedupe_key=["key", "seen"])
    for _ in range(3):
        pg.write([event(1, key="a")], Checkpoint("pg"))
    assert len(rows(schema)) == 1


def test_update_mode_never_lets_an_older_event_overwrite_a_newer_one(
    schema: str, data_dir: Path
) -> None:
    pg = sink(schema, data_dir, columns={"key": "text", "v": "text"}, write_mode="merge",
              dedupe_key=["key"], on_conflict="update")  # fmt: skip
    old, new = event(1, key="k", v="old"), event(2, key="k", v="new")
    pg.write([old], Checkpoint("pg"))
    pg.write([new], Checkpoint("pg"))
    pg.write([old], Checkpoint("pg"))  # a late redelivery of the older event
    assert rows(schema, columns='"_event_id", "v"') == [("ev-2", "new")]


def test_a_bad_dsn_never_shows_its_password(data_dir: Path, tmp_path: Path) -> None:
    from headrace.config.load import load_pipeline
    from headrace.errors import ConfigError

    dsn = "postgresql://postgres:s3cr%zzet@127.0.0.1:5432/postgres"
    config = PostgresConfig.model_validate(
        {"type": "postgres", "inputs": ["s"], "table": "t", "dsn": dsn}
    )
    pg = PostgresSink("pg", config, data_dir)
    pg.open()
    assert pg.health() is not None and "s3cr" not in (pg.health() or "")
    with pytest.raises(TransientSinkError) as info:
        pg.write([event(1)], Checkpoint("pg"))
    assert "s3cr" not in str(info.value) and "%25" in str(info.value)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"sources: {{s: {{type: http}}}}\nsinks:\n  db: {{type: postgres, inputs: [s], table: t, dsn: '{dsn}'}}\n"
    )
    with pytest.raises(ConfigError) as problems:
        load_pipeline(pipeline)
    assert "sinks.db.dsn: the dsn is not a valid" in str(problems.value)
    assert "s3cr" not in str(problems.value)


def test_text_arrives_intact_whatever_the_client_encoding(
    schema: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    pg = sink(schema, data_dir, columns={"s": "text", "n": "bigint"})
    pg.write([event(1, s="café 5 €", n=1)], Checkpoint("pg"))  # binary
    pg.write([event(2, s="café 5 €", n="2")], Checkpoint("pg"))  # text
    monkeypatch.delenv("PGCLIENTENCODING")  # for our own reading back
    assert [s for (s,) in rows(schema, columns='"s"')] == ["café 5 €", "café 5 €"]


def test_a_column_whose_type_changes_is_read_again_not_written_blind(
    schema: str, data_dir: Path
) -> None:
    pg = sink(schema, data_dir, columns={"code": "text"})
    pg.write([event(1, code="12345678")], Checkpoint("pg"))
    with psycopg.connect(DSN, autocommit=True) as conn:  # changed behind the sink's back
        conn.execute(psycopg.sql.SQL("ALTER TABLE {} ALTER COLUMN code TYPE bigint USING code::bigint")
                     .format(psycopg.sql.Identifier(schema, "impressions")))  # fmt: skip
    batch = [event(2, code="zyxwvuts"), event(3, code="42")]
    with pytest.raises(TransientSinkError, match=r"column code .* is now bigint"):
        pg.write(batch, Checkpoint("pg"))
    failed = pg.write(batch, Checkpoint("pg")).failed  # the runtime's retry
    assert [f.event.id for f in failed] == ["ev-2"]
    assert rows(schema, columns='"code"') == [(12345678,), (42,)]


def test_an_absurd_time_leaves_the_derived_column_empty(schema: str, data_dir: Path) -> None:
    pg = sink(schema, data_dir, columns={"time": "double precision"},
              derived={"at": {"source": "time", "unit": "epoch_ms"}})  # fmt: skip
    batch = [event(1, time=1e306), event(2, time=float(10**20)), event(3, time=1.7e12)]
    assert pg.write(batch, Checkpoint("pg")).failed == []
    stored = rows(schema, columns='"at"')
    assert stored[0] == (None,) and stored[1] == (None,) and stored[2][0] is not None


def test_export_filters_are_not_cut_to_the_column_length(
    schema: str, data_dir: Path, tmp_path: Path
) -> None:
    from headrace.query.postgres import PostgresExport

    ddl = tmp_path / "t.sql"
    ddl.write_text("CREATE TABLE impressions (env varchar(4), amount numeric(6, 1));")
    pg = sink(schema, data_dir, ddl=str(ddl), unknown_fields="freeze")
    pg.write([event(1, env="prod", amount=1.0)], Checkpoint("pg"))
    config = PostgresConfig.model_validate({"type": "postgres", "inputs": ["s"], "dsn": DSN,
                                            "schema": schema, "table": "impressions", "ddl": str(ddl)})  # fmt: skip

    def export(*where: tuple[str, str]) -> list[str]:
        import io

        out = io.BytesIO()
        with PostgresExport(config, where=list(where)) as selection:
            selection.write_csv(out)
        return out.getvalue().decode().splitlines()

    assert export() == ["env,amount", "prod,1.0"]  # a ddl table: its own columns
    assert export(("env", "prodX")) == ["env,amount"]
    assert export(("amount", "1.04")) == ["env,amount"]
    assert export(("env", "prod"), ("amount", "1")) == ["env,amount", "prod,1.0"]


def test_a_sink_that_cannot_open_leaves_the_others_alone(
    schema: str, data_dir: Path, tmp_path: Path
) -> None:
    ddl = tmp_path / "broken.sql"
    ddl.write_text("CREATE TABLE impressions (oops;")
    config = PostgresConfig.model_validate({"type": "postgres", "inputs": ["s"], "dsn": DSN,
                                            "schema": schema, "table": "impressions", "ddl": str(ddl)})  # fmt: skip
    pg = PostgresSink("pg", config, data_dir)
    pg.open()  # does not raise: delivery to the other sinks starts
    assert "syntax error" in (pg.health() or "")


def test_a_failed_write_stays_reported_while_the_database_answers(
    schema: str, data_dir: Path
) -> None:
    import headrace.sinks.postgres.sink as module

    pg = sink(schema, data_dir, columns={"code": "text"})
    pg.write([event(1, code="x")], Checkpoint("pg"))
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("ALTER TABLE {} ALTER COLUMN code TYPE bigint USING 1")
                     .format(psycopg.sql.Identifier(schema, "impressions")))  # fmt: skip
    with pytest.raises(TransientSinkError):
        pg.write([event(2, code="y")], Checkpoint("pg"))
    original = module.PROBE_EVERY
    module.PROBE_EVERY = 0.0
    try:
        pg.maintain()  # the database answers, but the last write failed
        assert pg.health() is not None
    finally:
        module.PROBE_EVERY = original


def test_a_string_python_cannot_encode_fails_alone(schema: str, data_dir: Path) -> None:
    pg = sink(schema, data_dir, columns={"s": "text"})
    batch = [event(1, s="fine"), event(2, s="lone \ud800 surrogate"), event(3, s="also fine")]
    failed = pg.write(batch, Checkpoint("pg")).failed
    assert [f.event.id for f in failed] == ["ev-2"]
    assert len(rows(schema)) == 2
