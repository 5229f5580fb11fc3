"""Suite item 10: hostile schema, table and column names through every SQL-building path, with
PostgreSQL logging every statement of the sessions under test: 0 unintended statements.

Each hypothesis example runs a path twice: once with hostile names (quotes, ``;``, comments,
``%`` and ``$1`` placeholders, backslashes, combining marks, right-to-left text, reserved words,
leading digits, spaces, up to PostgreSQL's 63 bytes) and once, as its twin, with the same
structure and plain names. ``sqlwatch`` compares the two runs statement by statement, from the
server's own log for PostgreSQL and from the client for DuckDB and Redshift (whose statements
are text: no Redshift is reachable here). Then the database is read back: exactly the expected
tables and columns, under exactly the hostile names, holding the rows that were sent, and no
schema outside the test's own touched. Names PostgreSQL cannot hold (NUL, over 63 bytes, empty)
are refused with a clear error before anything reaches the server.
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from headrace.loads.csvfile import CsvFile
from headrace.loads.schema import TableSchema, infer_schema, schema_from_files
from headrace.loads.warehouses.base import LoadPlan, quote_ident
from headrace.loads.warehouses.duckdb import DuckDBLoader, DuckDBWarehouseConfig
from headrace.loads.warehouses.postgres import PostgresLoader, PostgresWarehouseConfig
from headrace.loads.warehouses.redshift import RedshiftLoader, RedshiftWarehouseConfig
from headrace.query.lake import MAX_TIME_US, LakeQuery
from headrace.query.pg_table import PgTable
from headrace.query.postgres import PostgresExport
from headrace.query.summary import Dimension
from headrace.sinks.postgres.config import PostgresConfig
from headrace.sinks.postgres.sink import PostgresSink
from headrace.storage.state import Checkpoint
from headrace.types import Event
from reliability.sqlwatch import (
    ServerLog,
    Watch,
    duckdb_statements,
    postgres_statements,
    unintended,
)
from support.pgschema import DSN

FAULTS = "hostile identifiers"

# -- hostile names ------------------------------------------------------------------------------

FRAGMENTS = [
    '"', '""', "'", "''", ";", "--", "/*", "*/", "\\", "\\'", '\\"', "%", "%s", "%%", "%(x)s",
    "$1", "$$", "$a$", "?", ":x", "{}", "{0}", "(", ")", ",", ".", " ", "\t", "\n", "\r",
    "e\u0301", "\u202e", "\u05d0\u05d1", "\u0627\u0644", "\u200b", "\ufeff", "\u00a0", "ß",
    "İ", "Ǆ", "😀", "\U0001f1fa\U0001f1f8", "select", "SELECT", "table", "user", "order",
    "drop table x", "; DROP TABLE public.victim; --", "1", "0x", "NULL", "_", "a", "Z",
]  # fmt: skip

_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=20,
)


def _fits(name: str, limit: int) -> bool:
    return 0 < len(name.encode()) <= limit


# built once: hypothesis makes a strategy anew at each call of a function that returns one
_PARTS = st.lists(st.one_of(st.sampled_from(FRAGMENTS), _text), min_size=1, max_size=6)
_PAD = st.one_of(st.none(), st.sampled_from(["x", "é", "€", "😀"]))


@st.composite
def hostile_name(draw: st.DrawFn, limit: int = 63) -> str:
    """A name PostgreSQL can hold (1 to ``limit`` bytes, no NUL) that code building SQL by
    hand would get wrong."""
    name = "".join(draw(_PARTS))
    pad = draw(_PAD)
    if pad is not None:  # right up to the byte limit
        name += pad * max(0, (limit - len(name.encode())) // len(pad.encode()))
    while not _fits(name, limit):
        name = name[:-1] or "x"
    return name


_NAME = hostile_name()


@st.composite
def hostile_names(draw: st.DrawFn, count: int, *, keep: Callable[[str], bool] = bool) -> list[str]:
    """``count`` hostile names, distinct however a database folds case."""
    names: list[str] = []
    while len(names) < count:
        name = draw(_NAME)
        if keep(name) and name.casefold() not in {n.casefold() for n in names}:
            names.append(name)
    return names


def _column_name(name: str) -> bool:
    return not name.startswith("_")  # headrace's own columns start with "_"


def _header_name(name: str) -> bool:
    # a CSV header's names are stripped of surrounding spaces when read, and a file's first
    # character may be its byte-order mark
    return (_column_name(name) and name == name.strip() and not name.startswith("\ufeff")
            and not name.lower().startswith("_hr_"))  # fmt: skip


def _duckdb_header_name(name: str) -> bool:
    # DuckDB's reader cannot skip a header holding a line break: the loader refuses those
    return _header_name(name) and "\r" not in name and "\n" not in name


def _schema_name(prefix: str) -> str:
    """A fresh schema per run: the hostile prefix, cut to leave room for a unique tail."""
    tail = uuid.uuid4().hex[:10]
    while len((prefix + tail).encode()) > 63:
        prefix = prefix[:-1]
    return prefix + tail


# -- running a path and its twin ----------------------------------------------------------------


@dataclass
class Case:
    """One path's names: the schema prefix, the table, the columns, and more."""

    schema: str
    table: str
    columns: list[str]
    extra: list[str]  # fields that are no column yet (the sink's evolve / keep_json)
    mode: str

    def twin(self) -> Case:
        """The same structure with plain names."""
        return Case(
            "plain", "t", [f"c{i}" for i in range(len(self.columns))],
            [f"e{i}" for i in range(len(self.extra))], self.mode,
        )  # fmt: skip


def renaming(case: Case, twin: Case, schemas: tuple[str, str]) -> dict[str, str]:
    pairs = zip([*case.columns, *case.extra], [*twin.columns, *twin.extra], strict=True)
    return {schemas[0]: schemas[1], case.table: twin.table, **dict(pairs)}


def drop_schema(name: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def pg_columns(schema: str, table: str) -> list[str]:
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (sql.Identifier(schema, table).as_string(conn),),
        ).fetchall()
    return [r[0] for r in rows]


def pg_relations(schema: str) -> set[str]:
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm')",
            (schema,),
        ).fetchall()
    return {r[0] for r in rows}


def outside_objects() -> set[tuple[str, str]]:
    """Every schema and the relations of the schemas no test makes (public, the catalogs),
    and the roles: what a statement escaping its test schema would change."""
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT 'schema', nspname FROM pg_namespace UNION ALL "
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname IN ('public', 'pg_catalog', "
            "'information_schema') UNION ALL SELECT 'role', rolname FROM pg_roles"
        ).fetchall()
    return {(a, b) for a, b in rows}


@dataclass
class Tally:
    """What a path's examples added up to."""

    examples: int = 0
    statements: int = 0
    problems: list[str] | None = None

    def add(self, hostile: Watch, twin: Watch, renamed: dict[str, str]) -> None:
        self.examples += 1
        self.statements += len(hostile.statements)
        found = unintended(hostile.statements, twin.statements, renamed)
        found += _unlike_errors(hostile.errors, twin.errors)
        if found and self.problems is None:
            self.problems = found  # the first failing example, as hypothesis shrinks it
        assert not found, "\n".join(found[:5])
        assert hostile.statements, "no statement was recorded: the watch saw nothing"


def _unlike_errors(hostile: list[str], twin: list[str]) -> list[str]:
    """Server errors the twin did not meet too (a redelivery's unique violation is by design:
    the sink then takes its staged path). Messages quote names without escaping them, so they
    are compared up to the first name."""
    if [e.split('"', 1)[0] for e in hostile] == [e.split('"', 1)[0] for e in twin]:
        return []
    return [f"server errors {hostile!r} where the twin met {twin!r}"]


def examples(scale: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=scale.pick(25, 300), deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.large_base_example],
    )  # fmt: skip


@pytest.fixture(scope="module")
def server_log() -> Iterator[ServerLog]:
    log = ServerLog()
    yield log
    log.close()


def _record(record: Callable[..., Any], path: str, tally: Tally) -> None:
    record(
        test=f"sql identifiers: {path}", load=f"{tally.examples} hypothesis examples",
        faults=FAULTS, statements_checked=tally.statements,
        unintended=len(tally.problems or []),
    )  # fmt: skip


# -- the postgres sink ---------------------------------------------------------------------------


@st.composite
def sink_cases(draw: st.DrawFn) -> Case:
    names = draw(st.integers(1, 4).flatmap(lambda n: hostile_names(n + 3, keep=_column_name)))
    extra = draw(st.integers(0, 3))
    return Case(
        names[0], names[1], names[2 : len(names) - extra] or [names[2]],
        names[len(names) - extra :] if extra and len(names) - extra > 2 else [],
        draw(st.sampled_from(["append", "merge", "evolve"])),
    )  # fmt: skip


def sink_config(case: Case, schema: str) -> PostgresConfig:
    settings_: dict[str, Any] = {
        "type": "postgres", "inputs": ["s"], "dsn": DSN, "schema": schema,
        "table": case.table, "columns": dict.fromkeys(case.columns, "text"),
        "unknown_fields": "evolve" if case.mode == "evolve" else "keep_json",
    }  # fmt: skip
    if case.mode == "merge":
        settings_ |= {"write_mode": "merge", "dedupe_key": [case.columns[0]]}
    return PostgresConfig.model_validate(settings_)


def sink_events(case: Case, count: int = 3) -> list[Event]:
    return [
        Event(f"ev-{n}", "s", "s", 1_763_800_000_000_000 + n,
              {name: f"v{n}-{i}" for i, name in enumerate([*case.columns, *case.extra])})
        for n in range(count)
    ]  # fmt: skip


def fill_sink(case: Case, schema: str, tmp: Path) -> None:
    pg = PostgresSink("pg", sink_config(case, schema), tmp)
    pg.open()
    try:
        events = sink_events(case)
        assert pg.write(events, Checkpoint("pg")).failed == []
        assert pg.write(events[:1], Checkpoint("pg")).failed == []  # a redelivery
    finally:
        pg.close()


def test_postgres_sink(
    scale: Any, record: Callable[..., Any], server_log: ServerLog, tmp_path: Path
) -> None:
    """Table, columns, indexes, evolved columns and COPY of the postgres sink."""
    tally = Tally()

    @examples(scale)
    @given(case=sink_cases())
    def run(case: Case) -> None:
        twin = case.twin()
        schemas = (_schema_name(case.schema), _schema_name(twin.schema))
        before = outside_objects()
        try:
            watches = []
            for each, schema in ((case, schemas[0]), (twin, schemas[1])):
                with postgres_statements(server_log) as watch:
                    fill_sink(each, schema, tmp_path)
                watches.append(watch)
            tally.add(watches[0], watches[1], renaming(case, twin, schemas))
            extra_columns = case.extra if case.mode == "evolve" else ["_extra"]
            assert pg_columns(schemas[0], case.table) == [
                "_event_id", "_received_at", "_created_at", *case.columns, *extra_columns
            ]  # fmt: skip
            assert pg_relations(schemas[0]) == {case.table}
            stored = _rows(schemas[0], case.table)
            assert [r["_event_id"] for r in stored] == ["ev-0", "ev-1", "ev-2"]
            for n, row in enumerate(stored):
                fields = {**(row.pop("_extra", None) or {}), **row}
                for i, name in enumerate([*case.columns, *case.extra]):
                    assert fields[name] == f"v{n}-{i}"
        finally:
            for schema in schemas:
                drop_schema(schema)
        assert _escaped(before, outside_objects(), schemas) == set()

    try:
        run()
    finally:
        _record(record, "postgres sink", tally)


def _rows(schema: str, table: str) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(DSN, row_factory=dict_row) as conn:
        query = sql.SQL("SELECT * FROM {} ORDER BY _event_id").format(sql.Identifier(schema, table))
        rows = conn.execute(query).fetchall()
    for row in rows:
        for name in ("_received_at", "_created_at"):
            row.pop(name, None)
    return rows


def _escaped(
    before: set[tuple[str, str]], after: set[tuple[str, str]], schemas: tuple[str, ...]
) -> set[tuple[str, str]]:
    """What changed outside the test's schemas: other sessions' test schemas come and go, so
    only public, the catalogs and the roles count, and any schema named like ours."""
    changed = before ^ after
    return {
        (kind, name) for kind, name in changed
        if kind != "schema" or any(s[:-10] and name.startswith(s[:-10]) and name not in schemas
                                   for s in schemas)
    }  # fmt: skip


# -- reads of the postgres sink's table: dashboard queries and CSV export ------------------------


def read_table(case: Case, schema: str) -> None:
    config = sink_config(case, schema)
    first, *rest = [*case.columns, *case.extra]
    q = LakeQuery("pg", "s", since_us=0, until_us=MAX_TIME_US,
                  where=[(first, "v0-0")], missing_or=[(rest[0], "v0-1") if rest else (first, "v0-0")])  # fmt: skip
    table = PgTable(config)
    try:
        assert table.exists
        fields = [first, *rest]
        assert sum(n for _, _, n in table.counts(q, 60_000_000, first)) == 1
        assert table.top(q, first, 5) == [{"value": "v0-0", "count": 1}]
        table.summary(q, 60_000_000, [Dimension(f) for f in fields[:2]], fields[-1], 5)
        assert table.cardinality(q, fields, 100)[0] == 1
        page = table.events(q, 1, None)
        assert page["events"][0]["data"] == {n: f"v0-{i}" for i, n in enumerate(fields)}
        table.arrivals(1_763_799_000_000_000, 1_763_801_000_000_000)
        assert table.size_bytes() > 0
        assert table.estimated_rows() == 3
    finally:
        table.close()
    with PostgresExport(config, since_us=0, where=[(case.columns[-1], "v1-" + str(
            len(case.columns) - 1))], safe=True) as export:  # fmt: skip
        assert export.count() == 1
        out = io.BytesIO()
        assert export.write_csv(out) == 1
    assert next(csv.reader(io.StringIO(out.getvalue().decode(), newline=""))) == case.columns


def test_postgres_reads(
    scale: Any, record: Callable[..., Any], server_log: ServerLog, tmp_path: Path
) -> None:
    """The dashboard's queries of a postgres sink's table and ``headrace export --sink``."""
    tally = Tally()

    @examples(scale)
    @given(case=sink_cases())
    def run(case: Case) -> None:
        case = replace(case, mode="append")  # keep_json: fields without a column, too
        twin = case.twin()
        schemas = (_schema_name(case.schema), _schema_name(twin.schema))
        try:
            watches = []
            for each, schema in ((case, schemas[0]), (twin, schemas[1])):
                fill_sink(each, schema, tmp_path)
                with postgres_statements(server_log) as watch:
                    read_table(each, schema)
                watches.append(watch)
            tally.add(watches[0], watches[1], renaming(case, twin, schemas))
        finally:
            for schema in schemas:
                drop_schema(schema)

    try:
        run()
    finally:
        _record(record, "postgres reads", tally)


# -- warehouses: PostgreSQL, DuckDB, Redshift ---------------------------------------------------


@dataclass
class Load:
    """A warehouse case: names, and whether the table comes from a tables.sql file."""

    case: Case
    ddl: bool


@st.composite
def load_cases(draw: st.DrawFn, keep: Callable[[str], bool] = _header_name) -> Load:
    schema = draw(_NAME)
    names = draw(st.integers(2, 5).flatmap(lambda n: hostile_names(n, keep=keep)))
    table, columns = names[0], names[1:]
    mode = draw(st.sampled_from(["replace", "append", "merge"]))
    return Load(Case(schema, table, columns, [], mode), draw(st.booleans()))


def write_csv(path: Path, columns: list[str], batch: int) -> CsvFile:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for n in range(3):
            writer.writerow([f"{batch}-{n}" if i == 0 else f"v{n}" for i in range(len(columns))])
    return CsvFile.open(path)


def tables_sql(path: Path, load: Load) -> Path:
    """A ControlShift-style tables.sql defining the table, every name quoted as pg_dump does."""
    case = load.case
    lines = [f"DROP TABLE IF EXISTS {quote_ident(case.table)};",
             f"CREATE TABLE {quote_ident(case.table)} ("]  # fmt: skip
    lines += [f"    {quote_ident(c)} character varying(max) ENCODE zstd," for c in case.columns]
    lines += [f"    PRIMARY KEY ({quote_ident(case.columns[0])})", ");", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def plans(load: Load, tmp: Path) -> Iterator[LoadPlan]:
    """Two loads of the case's table (the second meets the table the first made)."""
    case = load.case
    schema: TableSchema | None = None
    for batch in range(2):
        file = write_csv(tmp / f"{uuid.uuid4().hex}.csv", case.columns, batch)
        if load.ddl:
            schema = schema_from_files(str(tables_sql(tmp / "tables.sql", load)), case.table)
            assert schema is not None
            assert [c.name for c in schema.columns] == case.columns  # the DDL reader's names
            assert schema.primary_key == (case.columns[0],)
        elif schema is None:
            schema = infer_schema(case.table, file, 10)
        if case.mode == "merge":
            schema = replace(schema, primary_key=(case.columns[0],))
        yield LoadPlan(case.table, case.mode, [file], schema, uuid.uuid4().hex)  # type: ignore[arg-type]


def expected_rows(mode: str) -> int:
    return 3 if mode == "replace" else 6


def test_postgres_warehouse(
    scale: Any, record: Callable[..., Any], server_log: ServerLog, tmp_path: Path
) -> None:
    """COPY loads (replace swaps, append, merge) into PostgreSQL, and the tables.sql reader."""
    tally = Tally()

    @examples(scale)
    @given(load=load_cases())
    def run(load: Load) -> None:
        twin = Load(load.case.twin(), load.ddl)
        schemas = (_schema_name(load.case.schema), _schema_name(twin.case.schema))
        before = outside_objects()
        try:
            watches = []
            for each, schema in ((load, schemas[0]), (twin, schemas[1])):
                warehouse = PostgresLoader(
                    PostgresWarehouseConfig.model_validate(
                        {"type": "postgres", "dsn": DSN, "schema": schema}
                    )
                )
                with postgres_statements(server_log) as watch:
                    for plan in plans(each, tmp_path):
                        warehouse.load(plan, None, threading.Event())
                    warehouse.close()
                watches.append(watch)
            tally.add(watches[0], watches[1], renaming(load.case, twin.case, schemas))
            case = load.case
            assert pg_relations(schemas[0]) == {case.table, "_headrace_loads"}
            assert pg_columns(schemas[0], case.table) == case.columns
            with psycopg.connect(DSN) as conn:
                count = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(schemas[0], case.table)
                    )
                ).fetchone()
            assert count is not None and count[0] == expected_rows(case.mode)
        finally:
            for schema in schemas:
                drop_schema(schema)
        assert _escaped(before, outside_objects(), schemas) == set()

    try:
        run()
    finally:
        _record(record, "postgres warehouse + tables.sql", tally)


def test_duckdb_warehouse(scale: Any, record: Callable[..., Any], tmp_path: Path) -> None:
    """read_csv loads into a DuckDB file, each statement recorded on the client."""
    import duckdb

    tally = Tally()

    @examples(scale)
    @given(load=load_cases(_duckdb_header_name))
    def run(load: Load) -> None:
        twin = Load(load.case.twin(), load.ddl)
        schemas = (_schema_name(load.case.schema), _schema_name(twin.case.schema))
        watches = []
        path = tmp_path / f"{uuid.uuid4().hex}.duckdb"
        for each, schema in ((load, schemas[0]), (twin, schemas[1])):
            path.unlink(missing_ok=True)
            warehouse = DuckDBLoader(
                DuckDBWarehouseConfig.model_validate(
                    {"type": "duckdb", "path": str(path), "schema": schema}
                ),
                tmp_path,
            )
            with duckdb_statements() as watch:
                for plan in plans(each, tmp_path):
                    warehouse.load(plan, None, threading.Event())
            watches.append(watch)
            if each is load:
                tables = _duck_tables(duckdb.connect(str(path)))
        tally.add(watches[0], watches[1], renaming(load.case, twin.case, schemas))
        case = load.case
        assert set(tables) == {(schemas[0], case.table), (schemas[0], "_headrace_loads")}
        assert tables[(schemas[0], case.table)] == (case.columns, expected_rows(case.mode))

    try:
        run()
    finally:
        _record(record, "duckdb warehouse", tally)


def _duck_tables(conn: Any) -> dict[tuple[str, str], tuple[list[str], int]]:
    """Every table in the file: its columns and rows."""
    try:
        found: dict[tuple[str, str], tuple[list[str], int]] = {}
        for schema, table in conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary"
        ).fetchall():
            columns = [r[0] for r in conn.execute(
                "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
                "ORDER BY column_index", [schema, table]).fetchall()]  # fmt: skip
            rows = conn.execute(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}")
            found[(schema, table)] = (columns, int(rows.fetchone()[0]))
        return found
    finally:
        conn.close()


class _Cluster:
    """Redshift's two seams, recording: uploads are kept, statements answered as a cluster
    that has loaded nothing yet would."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def put(self, url: str, data: bytes | None = None, path: str | None = None) -> None:
        pass

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        self.watch.statements.append(statement)
        if statement.startswith(("SELECT pg_last_copy_count", "SELECT count")):
            return [(3,)]
        return []


def test_redshift_statements(scale: Any, record: Callable[..., Any], tmp_path: Path) -> None:
    """The Redshift loader's statements (text: no Redshift is reachable from the suite)."""
    tally = Tally()

    @examples(scale)
    @given(load=load_cases())
    def run(load: Load) -> None:
        twin = Load(load.case.twin(), load.ddl)
        schemas = (_schema_name(load.case.schema), _schema_name(twin.case.schema))
        watches = []
        for each, schema in ((load, schemas[0]), (twin, schemas[1])):
            watch = Watch()
            cluster = _Cluster(watch)
            config = RedshiftWarehouseConfig.model_validate({
                "type": "redshift", "schema": schema, "s3_prefix": "s3://exports-bucket/headrace",
                "iam_role": "arn:aws:iam::123456789012:role/loader",
            })  # fmt: skip
            warehouse = RedshiftLoader(config, uploader=cluster, executor=cluster)
            for plan in plans(each, tmp_path):
                warehouse.load(plan, None, threading.Event())
            watches.append(watch)
        tally.add(watches[0], watches[1], renaming(load.case, twin.case, schemas))

    try:
        run()
    finally:
        _record(record, "redshift statements", tally)


# -- the watch itself, and names no database can hold ---------------------------------------------


def test_the_watch_sees_a_name_that_escaped_its_quotes(server_log: ServerLog) -> None:
    """What the checks above would say of SQL built by pasting names in: it fails."""
    runs = []
    for hostile in (True, False):
        schema = _schema_name("watch ")
        name = f'x" (a int); DROP TABLE "{schema}"."victim"; CREATE TABLE "{schema}"."y'
        try:
            # a client-side cursor sends a query without parameters as a simple query, where
            # PostgreSQL runs every statement of the text (psycopg's default never does)
            with (
                postgres_statements(server_log) as watch,
                psycopg.connect(DSN, cursor_factory=psycopg.ClientCursor) as conn,
            ):
                conn.execute(f'CREATE SCHEMA "{schema}"')
                conn.execute(f'CREATE TABLE "{schema}"."victim" (a int)')
                conn.execute(f'CREATE TABLE "{schema}"."{name if hostile else "t"}" (a int)')
                conn.commit()
        finally:
            drop_schema(schema)
        runs.append((watch, schema, name))
    (ours, schema, name), (theirs, twin_schema, _) = runs
    assert len(ours.statements) >= 3, "the server logged the watched session"
    found = unintended(ours.statements, theirs.statements, {name: "t", schema: twin_schema})
    assert any("more than one statement" in f for f in found), found


def test_names_postgresql_cannot_hold_are_refused(
    record: Callable[..., Any], server_log: ServerLog, tmp_path: Path
) -> None:
    """NUL, over 63 bytes, empty: a clear error, and none of it reaches the server."""
    from pydantic import ValidationError

    from headrace.errors import LoadError
    from headrace.sinks.postgres.sink import _why_unfit

    bad = {"nul": "a\x00b", "long": "é" * 32, "empty": ""}
    refused = 0
    for what, name in bad.items():
        for field_ in ("schema", "table"):
            settings_ = {
                "type": "postgres",
                "inputs": ["s"],
                "dsn": DSN,
                "table": "t",
                field_: name,
            }
            with pytest.raises(ValidationError, match=r"NUL|bytes"):
                PostgresConfig.model_validate(settings_)
            refused += 1
        with pytest.raises(ValidationError, match=r"NUL|bytes"):
            PostgresConfig.model_validate({"type": "postgres", "inputs": ["s"], "table": "t",
                                           "columns": {name: "text"}})  # fmt: skip
        assert _why_unfit(name), what  # evolve sends such a field to the dead-letter store
        refused += 2
        if what == "nul":  # the DuckDB and Redshift loaders' quoting
            with pytest.raises(LoadError, match="NUL"):
                quote_ident(name)
            refused += 1
    with postgres_statements(server_log) as watch:
        schema = _schema_name("refused ")
        warehouse = PostgresLoader(
            PostgresWarehouseConfig.model_validate(
                {"type": "postgres", "dsn": DSN, "schema": schema}
            )
        )
        file = write_csv(tmp_path / "r.csv", ["id"], 0)
        ddl = tmp_path / "r.sql"
        ddl.write_text('CREATE TABLE r (id text, "x\x00y" text);', encoding="utf-8")
        table_schema = schema_from_files(str(ddl), "r")
        assert table_schema is not None
        with pytest.raises(LoadError, match="NUL"):
            warehouse.load(LoadPlan("r", "append", [file], table_schema, "k"), None,
                           threading.Event())  # fmt: skip
        refused += 1
    record(test="sql identifiers: names no database can hold", load=f"{refused} refusals",
           faults="NUL, 64+ bytes, empty", statements_checked=len(watch.statements),
           unintended=len(watch.statements))  # fmt: skip
    assert watch.statements == []  # refused before connecting
