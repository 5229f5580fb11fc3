"""Loading CSV exports into PostgreSQL with COPY.

The staged file's bytes (decompressed on the fly) are streamed into ``COPY … FROM STDIN
(FORMAT csv, HEADER true[, FORCE_NULL (…)])`` with the header's column list, so PostgreSQL's own
CSV parser does the work. A full export goes into a new table ``_hr_new_<hash>`` and takes the
table's name in the same transaction (rename old, rename new, drop old): a reader waiting on
the table's lock during the swap then reads the new table. The new table copies the old one's
columns, defaults, indexes and constraints (``LIKE … INCLUDING ALL``) when no DDL defines it,
and takes over the sequences its ``serial`` columns own, but not its grants; a view on the
table stops the swap (the job fails with PostgreSQL's message). Every identifier goes through
``psycopg.sql.Identifier``; column types come from a DDL file (checked to be plain type words,
Redshift's ``varchar(max)`` read as ``text``, and each looked up with ``to_regtype`` first, so a
type PostgreSQL lacks is named with its column and DDL line) or from PostgreSQL itself.

Names are checked before anything is sent: libpq's identifier quoting ends a name at a NUL (so
``a<NUL>b`` would silently be ``"a"``) and PostgreSQL cuts a name at 63 bytes, so either would
load into a table or column other than the one named; such a load fails as ``bad_name``. A
statement that also takes parameters gets its names' ``%`` doubled, since psycopg reads every
``%`` of such a statement as a placeholder, inside a quoted name too.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from headrace.config.base import WarehouseConfig, pg_identifier
from headrace.drivers.postgres import lost_connection_errors
from headrace.errors import LoadError, TerminalLoadError, TransientLoadError, TransientSinkError
from headrace.loads.schema import Column, TableSchema
from headrace.loads.warehouses.base import MARKER_TABLE, LoadPlan, LoadResult, Progress
from headrace.registry import register

CONNECT_TIMEOUT = 10.0
PG_NAME_BYTES = 63
_EXTENSION_TYPES = {"hstore": "hstore", "citext": "citext"}
_SAFE_TYPE = re.compile(r'^[a-z][a-z0-9_ ."]*(\([0-9, ]+\))?( with(out)? time zone)?(\[\])*$')
_UNBOUNDED = re.compile(r"^(character varying|varchar|nvarchar)\(max\)(\[\])*$")


def postgres_type(column: Column) -> str:
    """The PostgreSQL type of a DDL column: Redshift's ``varchar(max)`` (ControlShift's
    tables.sql has it for every text column) is ``text``, PostgreSQL's unbounded string."""
    unbounded = _UNBOUNDED.match(column.type)
    return "text" + (unbounded.group(2) or "") if unbounded else column.type


class PostgresWarehouseConfig(WarehouseConfig):
    """A PostgreSQL database, loaded with COPY."""

    type: Literal["postgres"]
    dsn: SecretStr | None = None
    """libpq connection string or URL; else the PG* environment variables. Never logged."""
    schema_name: str = Field(default="public", alias="schema")
    """Schema holding the loaded tables (created if missing)."""

    @field_validator("schema_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return pg_identifier(value, "schema")


class PostgresLoader:
    """A PostgreSQL warehouse; see the module docstring."""

    def __init__(self, config: PostgresWarehouseConfig, dsn: str | None = None) -> None:
        self.config = config
        self.dsn = dsn if dsn is not None else (config.dsn.get_secret_value() if config.dsn else "")
        self.schema = config.schema_name
        self.name = f"postgres schema {self.schema}"
        self._conn: Any = None

    def _connect(self) -> Any:
        # the sink's connection settings: UTF-8, TCP keepalives and user timeout (a silent
        # network fails the load within a minute), and no password in any message
        from headrace.sinks.postgres.connect import connect

        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = connect(self.dsn, CONNECT_TIMEOUT)
            except TransientSinkError as exc:
                raise TransientLoadError("warehouse_unavailable", str(exc)) from exc
        return self._conn

    def _describe(self, exc: BaseException) -> str:
        from headrace.sinks.postgres.connect import describe

        return describe(exc, self.dsn)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def existing_schema(self, table: str) -> TableSchema | None:

        conn = self._connect()
        try:
            with conn.transaction():
                rows = conn.execute(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
                    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 "
                    "AND NOT a.attisdropped ORDER BY a.attnum",
                    (self.schema, table),
                ).fetchall()
                key = conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
                    "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary "
                    "ORDER BY array_position(i.indkey, a.attnum)",
                    (self.schema, table),
                ).fetchall()
        except lost_connection_errors() as exc:
            raise TransientLoadError(
                "warehouse_unavailable", f"PostgreSQL: {self._describe(exc)}"
            ) from exc
        if not rows:
            return None
        columns = tuple(Column(name, pg_type, not_null) for name, pg_type, not_null in rows)
        return TableSchema(table, columns, tuple(r[0] for r in key), "existing")

    def count(self, table: str) -> int:
        from psycopg import sql

        conn = self._connect()
        with conn.transaction():
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.schema, table))
            return int(conn.execute(query).fetchone()[0])

    # -- loading ---------------------------------------------------------------------------

    def load(self, plan: LoadPlan, progress: Progress | None, stop: threading.Event) -> LoadResult:
        import psycopg

        _check_names(plan)
        conn = self._connect()
        try:
            return self._load(conn, plan, progress, stop)
        except LoadError:
            raise
        except lost_connection_errors() as exc:
            self.close()
            raise TransientLoadError(
                "warehouse_unavailable", f"PostgreSQL: {self._describe(exc)}"
            ) from exc
        except psycopg.errors.QueryCanceled as exc:
            raise TransientLoadError("interrupted", "stopped") from exc
        except psycopg.Error as exc:
            where = exc.diag.context or ""
            detail = f" ({where.strip().splitlines()[-1]})" if where else ""
            raise TerminalLoadError(
                "rejected_by_warehouse",
                f"PostgreSQL refused the load of {plan.table}: {self._describe(exc)}{detail}",
            ) from exc

    def _load(
        self, conn: Any, plan: LoadPlan, progress: Progress | None, stop: threading.Event
    ) -> LoadResult:
        from psycopg import sql

        schema = sql.Identifier(self.schema)
        marker = sql.Identifier(self.schema, MARKER_TABLE)
        bound_marker = _bound_ident(self.schema, MARKER_TABLE)  # in statements with parameters
        target = sql.Identifier(self.schema, plan.table)
        with conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (batch_key text PRIMARY KEY, table_name text "
                    "NOT NULL, mode text NOT NULL, rows bigint NOT NULL, "
                    "loaded_at timestamptz NOT NULL DEFAULT now())"
                ).format(marker)
            )
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(marker))
            done = conn.execute(
                sql.SQL("SELECT rows FROM {} WHERE batch_key = %s").format(bound_marker),
                (plan.batch_key,),
            ).fetchone()
            if done is not None:
                return LoadResult([], already_loaded=True)
            for column in plan.schema.columns:
                extension = _EXTENSION_TYPES.get(column.type.rsplit(".", 1)[-1].strip("[]"))
                if extension:
                    conn.execute(
                        sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                            sql.Identifier(extension)
                        )
                    )
            exists = self._exists(conn, plan.table)
            if plan.mode == "replace":
                rows = self._replace(conn, plan, progress, stop, exists)
            elif plan.mode == "merge":
                rows = self._merge(conn, plan, progress, stop, exists)
            else:
                if not exists:
                    self._create(conn, target, plan.schema)
                rows = [self._copy(conn, target, f, plan, progress, stop) for f in plan.files]
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (batch_key, table_name, mode, rows) VALUES (%s, %s, %s, %s)"
                ).format(bound_marker),
                (plan.batch_key, plan.table, plan.mode, sum(rows)),
            )
        # a replaced table holds just what was loaded; counting an appended-to table would scan
        # all of it at every incremental load, for a log line
        return LoadResult(rows, rows_in_table=sum(rows) if plan.mode == "replace" else None)

    def _exists(self, conn: Any, table: str) -> bool:
        found = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (self.schema, table),
        ).fetchone()
        return found is not None

    def _create(self, conn: Any, name: Any, schema: TableSchema) -> None:
        from psycopg import sql

        types = self._checked_types(conn, schema)
        parts = []
        for column in schema.columns:
            not_null = " NOT NULL" if column.name in schema.primary_key else ""
            parts.append(
                sql.SQL("{} {}").format(
                    sql.Identifier(column.name), sql.SQL(types[column.name] + not_null)
                )
            )
        if schema.primary_key:
            parts.append(
                sql.SQL("PRIMARY KEY ({})").format(
                    sql.SQL(", ").join(sql.Identifier(k) for k in schema.primary_key)
                )
            )
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(name, sql.SQL(", ").join(parts)))

    def _checked_types(self, conn: Any, schema: TableSchema) -> dict[str, str]:
        """Each column's PostgreSQL type; ``LoadError`` naming the column (and the DDL file and
        line it came from) for a type that is not plain type words or that PostgreSQL lacks,
        where PostgreSQL's own error would name neither."""
        types = {c.name: postgres_type(c) for c in schema.columns}
        for column in schema.columns:
            if not _SAFE_TYPE.match(types[column.name]):
                raise TerminalLoadError(
                    "bad_schema",
                    f"{column.describe(schema.name)}: unsupported type {types[column.name]!r}",
                )
        distinct = sorted(set(types.values()))
        known = self._known_types(conn, distinct)
        for column in schema.columns:
            if not known.get(types[column.name]):
                raise TerminalLoadError(
                    "bad_schema",
                    f"{column.describe(schema.name)}: PostgreSQL has no type "
                    f"{types[column.name]!r}",
                )
        return types

    def _known_types(self, conn: Any, names: list[str]) -> dict[str, bool]:
        """Whether PostgreSQL knows each type name: one query, or one a name if a name is
        malformed (``to_regtype`` raises on those; a savepoint keeps the transaction)."""
        import psycopg

        query = "SELECT t, to_regtype(t) IS NOT NULL FROM unnest(%s::text[]) AS t"
        try:
            with conn.transaction():
                return dict(conn.execute(query, (names,)).fetchall())
        except psycopg.errors.SyntaxError:
            pass
        known: dict[str, bool] = {}
        for name in names:
            try:
                with conn.transaction():
                    known.update(conn.execute(query, ([name],)).fetchall())
            except psycopg.errors.SyntaxError:
                known[name] = False
        return known

    def _copy(
        self,
        conn: Any,
        into: Any,
        file: Any,
        plan: LoadPlan,
        progress: Progress | None,
        stop: threading.Event,
    ) -> int:
        from psycopg import sql

        columns = sql.SQL(", ").join(sql.Identifier(h) for h in file.header)
        options: sql.Composable = sql.SQL("FORMAT csv, HEADER true")
        if plan.empty_as_null:
            options = sql.SQL("{}, FORCE_NULL ({})").format(options, columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(into, columns, options)
        with conn.cursor() as cursor:
            with cursor.copy(statement) as copy:
                for chunk in file.chunks():
                    if stop.is_set():
                        raise TransientLoadError("interrupted", "stopped")
                    copy.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
            return int(cursor.rowcount)

    def _replace(
        self,
        conn: Any,
        plan: LoadPlan,
        progress: Progress | None,
        stop: threading.Event,
        exists: bool,
    ) -> list[int]:
        from psycopg import sql

        tag = hashlib.sha256(plan.table.encode()).hexdigest()[:16]
        new, old = f"_hr_new_{tag}", f"_hr_old_{tag}"
        staging = sql.Identifier(self.schema, new)
        target = sql.Identifier(self.schema, plan.table)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
        if exists and plan.schema.origin == "existing":
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(staging, target))
            self._take_sequences(conn, plan.table, new)
        else:
            self._create(conn, staging, plan.schema)
        rows = [self._copy(conn, staging, f, plan, progress, stop) for f in plan.files]
        if exists:
            conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(target, sql.Identifier(old)))
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(staging, sql.Identifier(plan.table))
        )
        if exists:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(self.schema, old)))
        return rows

    def _take_sequences(self, conn: Any, old: str, new: str) -> None:
        """Give ``new`` (a ``LIKE old INCLUDING ALL`` copy) the sequences ``old``'s columns own
        (``serial``): the copied defaults still call them, so dropping ``old`` would fail, and
        with CASCADE would take the defaults with it (identity columns get new sequences)."""
        from psycopg import sql

        owned = conn.execute(
            "SELECT sn.nspname, s.relname, a.attname FROM pg_depend d "
            "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "JOIN pg_namespace sn ON sn.oid = s.relnamespace "
            "JOIN pg_class t ON t.oid = d.refobjid "
            "JOIN pg_namespace tn ON tn.oid = t.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
            "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
            "AND d.deptype = 'a' AND tn.nspname = %s AND t.relname = %s",
            (self.schema, old),
        ).fetchall()
        for schema, sequence, column in owned:
            conn.execute(
                sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                    sql.Identifier(schema, sequence), sql.Identifier(self.schema, new, column)
                )
            )

    def _merge(
        self,
        conn: Any,
        plan: LoadPlan,
        progress: Progress | None,
        stop: threading.Event,
        exists: bool,
    ) -> list[int]:
        from psycopg import sql

        target = sql.Identifier(self.schema, plan.table)
        if not exists:
            self._create(conn, target, plan.schema)
        temp = sql.Identifier("_hr_merge")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp._hr_merge"))
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(temp, target))
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN _hr_seq bigserial").format(temp))
        rows = [self._copy(conn, temp, f, plan, progress, stop) for f in plan.files]
        names = list(dict.fromkeys(h for f in plan.files for h in f.header))
        key = sql.SQL(", ").join(sql.Identifier(k) for k in plan.primary_key)
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        updates = [n for n in names if n not in plan.primary_key]
        action = (
            sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                    for n in updates
                )
            )
            if updates
            else sql.SQL("DO NOTHING")
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT DISTINCT ON ({}) {} FROM {} "
                "ORDER BY {}, _hr_seq DESC ON CONFLICT ({}) {}"
            ).format(target, cols, key, cols, temp, key, key, action)
        )
        return rows


def _check_names(plan: LoadPlan) -> None:
    """``bad_name`` for a name PostgreSQL cannot hold as it is (see the module docstring)."""
    names = [("table", plan.table)]
    names += [(f"table {plan.table}: column", c.name) for c in plan.schema.columns]
    names += [(f"table {plan.table}: key column", k) for k in plan.primary_key]
    names += [(f"{f.path.name}: column", h) for f in plan.files for h in f.header]
    for what, name in names:
        if "\x00" in name:
            raise TerminalLoadError("bad_name", f"{what} {name!r}: a name cannot hold NUL")
        if not name or len(name.encode()) > PG_NAME_BYTES:
            raise TerminalLoadError(
                "bad_name",
                f"{what} {name!r}: names must be 1 to {PG_NAME_BYTES} bytes "
                "(PostgreSQL cuts longer ones)",
            )


def _bound_ident(*names: str) -> Any:
    """``sql.Identifier(*names)`` for a statement run with parameters (see the docstring)."""
    from psycopg import sql

    return sql.Identifier(*(name.replace("%", "%%") for name in names))


def build(config: PostgresWarehouseConfig, data_dir: Path) -> PostgresLoader:
    """The warehouse of a source's config (what the registry builds)."""
    return PostgresLoader(config)


register(
    "warehouse", "postgres", config=PostgresWarehouseConfig,
    implementation="headrace.loads.warehouses.postgres:build",
    healthcheck="headrace.loads.warehouses.postgres:healthcheck",
)  # fmt: skip


def healthcheck(config: Any) -> str | None:
    """Connect to the warehouse (nothing is written)."""
    from headrace.sinks.postgres.connect import connect

    dsn = config.dsn.get_secret_value() if config.dsn else ""
    try:
        connect(dsn, CONNECT_TIMEOUT).close()
    except TransientSinkError as exc:
        return str(exc)
    return None
