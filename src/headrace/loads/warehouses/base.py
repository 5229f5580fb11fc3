"""What every warehouse does for a load, and how a table's target schema is settled.

A warehouse takes a ``LoadPlan`` (a table, a write disposition, staged CSV files, the target
schema and the batch key) and loads it in one transaction:

- ``replace`` (full export): the files go into a new staging table, which takes the table's
  name in the same transaction; readers see the old table or the new one, never an empty or
  half-loaded one;
- ``append`` (incremental): rows are added;
- ``merge`` (incremental, keyed): rows replace those with the same primary key, others are added.

The batch key is written to ``_headrace_loads`` in the warehouse inside that transaction, and a
warehouse asked to load a key it already holds does nothing: a batch whose worker died after
the commit is never loaded twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from headrace.config.bulk import BulkExportSource
from headrace.errors import TerminalLoadError
from headrace.loads.csvfile import CsvFile
from headrace.loads.schema import Column, TableSchema, infer_schema, schema_from_files

Mode = Literal["replace", "append", "merge"]
MARKER_TABLE = "_headrace_loads"
Progress = Callable[[int], None]  # bytes of CSV handed to the warehouse since the last call


@dataclass(frozen=True)
class LoadPlan:
    """One load: which table, how, from which files, into what shape."""

    table: str
    mode: Mode
    files: list[CsvFile]
    schema: TableSchema
    batch_key: str
    empty_as_null: bool = True

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.schema.primary_key


@dataclass(frozen=True)
class LoadResult:
    """Rows loaded from each file (in plan order; ``None`` for a file the warehouse counted
    only together with others); ``already_loaded`` when the key was known."""

    rows_per_file: Sequence[int | None]
    already_loaded: bool = False
    rows_in_table: int | None = None
    rows_loaded: int | None = None  # all the batch's rows, if not the sum of rows_per_file

    @property
    def rows(self) -> int:
        """Rows the batch loaded in all."""
        if self.rows_loaded is not None:
            return self.rows_loaded
        return sum(r for r in self.rows_per_file if r is not None)


class Warehouse(Protocol):
    """A place tables are loaded into (PostgreSQL, DuckDB, Redshift)."""

    name: str

    def existing_schema(self, table: str) -> TableSchema | None:
        """The table's columns and primary key, or ``None`` if it does not exist."""
        ...

    def load(self, plan: LoadPlan, progress: Progress | None, stop: threading.Event) -> LoadResult:
        """Load ``plan`` in one transaction (see the module docstring); ``LoadError`` on
        failure (``retriable`` when the warehouse was unreachable)."""
        ...

    def close(self) -> None: ...


def settle_schema(
    source: BulkExportSource, warehouse: Warehouse, table: str, mode: Mode, files: list[CsvFile]
) -> TableSchema:
    """The target schema: the DDL file's if it defines the table, else the existing table's
    (for a full export, extended by inferred columns the new file brings), else inferred from
    the first file. Every file's header must name columns of it."""
    schema = schema_from_files(source.schemas, table)
    if schema is None:
        existing = warehouse.existing_schema(table)
        if existing is None:
            schema = infer_schema(table, files[0], source.infer_rows)
        elif mode == "replace" and any(existing.column(h) is None for h in files[0].header):
            inferred = infer_schema(table, files[0], source.infer_rows)
            columns = [existing.column(c.name) or c for c in inferred.columns]
            kept_key = tuple(k for k in existing.primary_key if k in files[0].header)
            schema = TableSchema(table, tuple(columns), kept_key, "inferred")
        else:
            schema = existing
    key = source.primary_keys.get(table)
    if key:
        schema = replace(schema, primary_key=tuple(key))
    missing = [k for k in schema.primary_key if schema.column(k) is None]
    if missing:
        raise TerminalLoadError(
            "bad_schema", f"table {table}: primary key column(s) {', '.join(missing)} not defined"
        )
    if mode == "merge" and not schema.primary_key:
        raise TerminalLoadError(
            "no_primary_key",
            f"table {table}: merging needs a primary key (in the DDL or primary_keys)",
        )
    for file in files:
        schema.check_header(file)
        if mode == "merge":
            absent = [k for k in schema.primary_key if k not in file.header]
            if absent:
                raise TerminalLoadError(
                    "bad_csv",
                    f"{file.path.name}: line 1: key column(s) {', '.join(absent)} missing",
                )
    return schema


def column_definitions(schema: TableSchema, translate: Callable[[Column], str]) -> list[str]:
    """``"name" type`` for each column, key columns NOT NULL (other constraints are not kept:
    a dump's NOT NULL often relies on a DEFAULT the export does not need)."""
    out = []
    for column in schema.columns:
        not_null = " NOT NULL" if column.name in schema.primary_key else ""
        out.append(f"{quote_ident(column.name)} {translate(column)}{not_null}")
    return out


def quote_ident(name: str) -> str:
    """A SQL identifier, always quoted."""
    if "\x00" in name:
        raise TerminalLoadError("bad_name", "names must not contain NUL")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A SQL string literal (standard-conforming strings: only ``'`` needs doubling)."""
    if "\x00" in text:
        raise TerminalLoadError("bad_name", "text must not contain NUL")
    return "'" + text.replace("'", "''") + "'"
