"""Loading CSV exports into an embedded DuckDB database with DuckDB's own CSV reader.

``read_csv`` is given the header's columns with their target types (no sniffing), RFC 4180
quoting, and ``nullstr ''``; compressed files are decompressed by headrace (so their cap is counted; DuckDB has no bzip2
reader anyway) to a scratch file of their own, deleted after the statement. A full export goes into a new table that takes the table's name
in the same transaction (DuckDB's DDL is transactional, so readers see the old or the new
table). The file is opened for each load and closed after it, so other processes can read the
database between loads. PostgreSQL types are translated (``hstore``, ``json``, arrays and other
types DuckDB cannot parse from their text form become VARCHAR).
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from headrace.config.base import WarehouseConfig
from headrace.errors import LoadError, TerminalLoadError, TransientLoadError
from headrace.loads.schema import Column, TableSchema
from headrace.loads.warehouses.base import (
    MARKER_TABLE,
    LoadPlan,
    LoadResult,
    Progress,
    column_definitions,
    quote_ident,
    quote_literal,
)
from headrace.registry import register

_SIMPLE = {
    "smallint": "SMALLINT", "int2": "SMALLINT", "integer": "INTEGER", "int": "INTEGER",
    "int4": "INTEGER", "bigint": "BIGINT", "int8": "BIGINT", "real": "REAL", "float4": "REAL",
    "double precision": "DOUBLE", "float8": "DOUBLE", "numeric": "DOUBLE", "decimal": "DOUBLE",
    "boolean": "BOOLEAN", "bool": "BOOLEAN", "date": "DATE", "uuid": "UUID",
    "timestamp": "TIMESTAMP", "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMPTZ", "timestamptz": "TIMESTAMPTZ",
    "time": "TIME", "time without time zone": "TIME", "serial": "INTEGER", "bigserial": "BIGINT",
}  # fmt: skip
_NUMERIC = re.compile(r"^(numeric|decimal)\((\d+)(?:,\s*(\d+))?\)$")
_TIMESTAMP_P = re.compile(r"^timestamp\(\d\)( with(out)? time zone)?$")


def duckdb_type(column: Column) -> str:
    """The DuckDB type a PostgreSQL type loads as."""
    pg = column.type.strip().lower()
    if pg.endswith("[]"):
        return "VARCHAR"
    if pg in _SIMPLE:
        return _SIMPLE[pg]
    numeric = _NUMERIC.match(pg)
    if numeric:
        precision, scale = int(numeric.group(2)), int(numeric.group(3) or 0)
        return f"DECIMAL({precision},{scale})" if precision <= 38 else "DOUBLE"
    if _TIMESTAMP_P.match(pg):
        return "TIMESTAMPTZ" if "with time zone" in pg and "without" not in pg else "TIMESTAMP"
    return "VARCHAR"  # text, character varying(n) and varchar(max), hstore, json(b), inet, ...


class DuckDBWarehouseConfig(WarehouseConfig):
    """An embedded DuckDB database file, loaded with its CSV reader."""

    type: Literal["duckdb"]
    path: str = "warehouse.duckdb"
    """Database file; relative paths are inside the data directory."""
    schema_name: str = Field(default="main", alias="schema")
    """Schema holding the loaded tables (created if missing)."""


class DuckDBLoader:
    """A DuckDB warehouse; see the module docstring."""

    def __init__(self, config: DuckDBWarehouseConfig, data_dir: Path) -> None:
        path = Path(config.path)
        self.path = path if path.is_absolute() else data_dir / path
        self.schema = config.schema_name
        self.scratch = data_dir / "loads" / "scratch"
        self.name = f"duckdb {self.path}"

    def _connect(self) -> Any:
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(self.path))
        except duckdb.Error as exc:  # another process holds the file
            raise TransientLoadError(
                "warehouse_unavailable", f"cannot open {self.path}: {exc}"
            ) from exc

    def close(self) -> None:
        pass

    def _table(self, name: str) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(name)}"

    def existing_schema(self, table: str) -> TableSchema | None:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [self.schema, table],
            ).fetchall()
            key = conn.execute(
                "SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = ? "
                "AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
                [self.schema, table],
            ).fetchone()
        finally:
            conn.close()
        if not rows:
            return None
        columns = tuple(Column(name, _pg_spelling(t)) for name, t in rows)
        return TableSchema(table, columns, tuple(key[0]) if key else (), "existing")

    def count(self, table: str) -> int:
        conn = self._connect()
        try:
            return int(conn.execute(f"SELECT count(*) FROM {self._table(table)}").fetchone()[0])
        finally:
            conn.close()

    def load(self, plan: LoadPlan, progress: Progress | None, stop: threading.Event) -> LoadResult:
        import duckdb

        for file in plan.files:
            broken = next((h for h in file.header if "\r" in h or "\n" in h), None)
            if broken is not None:
                # read_csv(header = true) skips one physical line: the rest of such a header
                # would be read as data, or the file silently as no rows at all
                raise TerminalLoadError(
                    "bad_csv",
                    f"{file.path.name}: line 1: column {broken!r}: DuckDB's CSV reader cannot "
                    "load a file whose header names hold a line break",
                )
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            result = self._load(conn, plan, progress, stop)
            if result.already_loaded:
                conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")
            return result
        except LoadError:
            conn.execute("ROLLBACK")
            raise
        except duckdb.Error as exc:
            conn.execute("ROLLBACK")
            raise TerminalLoadError(
                "rejected_by_warehouse",
                f"DuckDB refused the load of {plan.table}: {str(exc).splitlines()[0]}",
            ) from exc
        finally:
            conn.close()

    def _load(
        self, conn: Any, plan: LoadPlan, progress: Progress | None, stop: threading.Event
    ) -> LoadResult:
        marker = self._table(MARKER_TABLE)
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {marker} (batch_key VARCHAR PRIMARY KEY, "
            "table_name VARCHAR, mode VARCHAR, rows BIGINT, loaded_at TIMESTAMPTZ DEFAULT now())"
        )
        if conn.execute(f"SELECT 1 FROM {marker} WHERE batch_key = ?", [plan.batch_key]).fetchone():
            return LoadResult([], already_loaded=True)
        target = self._table(plan.table)
        exists = self.existing_schema_in(conn, plan.table)
        if plan.mode == "replace":
            tag = hashlib.sha256(plan.table.encode()).hexdigest()[:16]
            staging = self._table(f"_hr_new_{tag}")
            conn.execute(f"DROP TABLE IF EXISTS {staging}")
            self._create(conn, staging, plan.schema)
            rows = [self._insert(conn, staging, f, plan, progress, stop) for f in plan.files]
            if exists:
                conn.execute(f"DROP TABLE {target}")
            conn.execute(f"ALTER TABLE {staging} RENAME TO {quote_ident(plan.table)}")
        elif plan.mode == "merge":
            if not exists:
                self._create(conn, target, plan.schema)
            conn.execute("DROP TABLE IF EXISTS temp.main._hr_merge")
            conn.execute(f"CREATE TEMP TABLE temp.main._hr_merge AS SELECT * FROM {target} LIMIT 0")
            rows = [
                self._insert(conn, "temp.main._hr_merge", f, plan, progress, stop)
                for f in plan.files
            ]
            names = list(dict.fromkeys(h for f in plan.files for h in f.header))
            cols = ", ".join(quote_ident(n) for n in names)
            key = ", ".join(quote_ident(k) for k in plan.primary_key)
            updates = [n for n in names if n not in plan.primary_key]
            action = (
                "DO UPDATE SET "
                + ", ".join(f"{quote_ident(n)} = EXCLUDED.{quote_ident(n)}" for n in updates)
                if updates
                else "DO NOTHING"
            )
            conn.execute(
                f"INSERT INTO {target} ({cols}) SELECT {cols} FROM temp.main._hr_merge "
                f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY rowid DESC) = 1 "
                f"ON CONFLICT ({key}) {action}"
            )
            conn.execute("DROP TABLE temp.main._hr_merge")
        else:
            if not exists:
                self._create(conn, target, plan.schema)
            rows = [self._insert(conn, target, f, plan, progress, stop) for f in plan.files]
        conn.execute(
            f"INSERT INTO {marker} (batch_key, table_name, mode, rows) VALUES (?, ?, ?, ?)",
            [plan.batch_key, plan.table, plan.mode, sum(rows)],
        )
        total = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
        return LoadResult(rows, rows_in_table=int(total))

    def existing_schema_in(self, conn: Any, table: str) -> bool:
        found = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [self.schema, table],
        ).fetchone()
        return found is not None

    def _create(self, conn: Any, name: str, schema: TableSchema) -> None:
        parts = column_definitions(schema, duckdb_type)
        if schema.primary_key:
            parts.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in schema.primary_key)})")
        conn.execute(f"CREATE TABLE {name} ({', '.join(parts)})")

    def _insert(
        self,
        conn: Any,
        into: str,
        file: Any,
        plan: LoadPlan,
        progress: Progress | None,
        stop: threading.Event,
    ) -> int:
        if stop.is_set():
            raise TransientLoadError("interrupted", "stopped")
        types = {c.name: duckdb_type(c) for c in plan.schema.columns}
        columns = ", ".join(
            f"{quote_literal(h)}: {quote_literal(types.get(h, 'VARCHAR'))}" for h in file.header
        )
        names = ", ".join(quote_ident(h) for h in file.header)
        quoted_nulls = "true" if plan.empty_as_null else "false"
        path = file.path
        if file.compression != "none":
            # decompressed by headrace, not by DuckDB (which reads gzip but not bzip2): only
            # then is the decompressed size counted against the file's cap
            self.scratch.mkdir(parents=True, exist_ok=True)
            path = file.plain_path(self.scratch)
        try:
            count = conn.execute(
                f"INSERT INTO {into} ({names}) SELECT * FROM read_csv(?, header = true, "
                f"auto_detect = false, columns = {{{columns}}}, delim = ',', quote = '\"', "
                f"escape = '\"', nullstr = '', allow_quoted_nulls = {quoted_nulls}, "
                "compression = 'none')",
                [str(path)],
            ).fetchone()[0]
        finally:
            if path != file.path:
                Path(path).unlink(missing_ok=True)
        if progress is not None:
            progress(file.bytes)
        return int(count)


def _pg_spelling(duck: str) -> str:
    """A DuckDB type named the PostgreSQL way (so schemas compare across warehouses)."""
    upper = duck.upper()
    reverse = {"VARCHAR": "text", "INTEGER": "integer", "BIGINT": "bigint", "DOUBLE": "double precision",
               "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp without time zone",
               "TIMESTAMP WITH TIME ZONE": "timestamp with time zone", "SMALLINT": "smallint",
               "REAL": "real", "UUID": "uuid", "TIME": "time"}  # fmt: skip
    if upper in reverse:
        return reverse[upper]
    if upper.startswith("DECIMAL"):
        return "numeric" + upper[len("DECIMAL") :]
    return "text"


def build(config: DuckDBWarehouseConfig, data_dir: Path) -> DuckDBLoader:
    """The warehouse of a source's config (what the registry builds)."""
    return DuckDBLoader(config, data_dir)


register(
    "warehouse", "duckdb", config=DuckDBWarehouseConfig,
    implementation="headrace.loads.warehouses.duckdb:build",
    healthcheck="headrace.loads.warehouses.duckdb:healthcheck",
    embedded="its database file on the disk of the machine that loads it; load into a "
    "postgres or redshift warehouse instead",
)  # fmt: skip


def healthcheck(config: DuckDBWarehouseConfig) -> str | None:
    """Whether the database file's directory can be written (relative paths are checked when
    the server starts, inside its data directory)."""
    from headrace.sinks.lake.sink import writable_directory_problem

    path = Path(config.path)
    return writable_directory_problem(path.parent) if path.is_absolute() else None
