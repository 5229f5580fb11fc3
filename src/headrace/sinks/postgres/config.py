"""The ``postgres`` sink's config: the table, its columns, and how rows are written."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from headrace.config.base import Model, Seconds, SinkConfig, pg_identifier
from headrace.registry import Problem, ValidationContext

PgType = Literal["text", "bigint", "integer", "double precision", "numeric", "boolean",
                 "timestamptz", "jsonb"]  # fmt: skip


class DerivedTime(Model):
    """A timestamptz column computed from an event field."""

    source: str
    """The event field holding the time."""
    unit: Literal["epoch_ms", "epoch_s", "iso8601"] = "epoch_ms"
    """How the field writes it."""


class PostgresExport(Model):
    """How ``headrace export --sink`` writes this table as CSV."""

    columns: dict[str, str] = Field(default_factory=dict)
    """Column: header name, in order (e.g. ``key: User Key``); default: every declared column."""
    time_column: str = "_received_at"
    """Column ``--since``/``--until`` filter on."""
    time_unit: Literal["timestamp", "epoch_ms", "epoch_s"] = "timestamp"
    """How ``time_column`` is stored: a timestamp, or a number of ms or s since the epoch."""


class PostgresConfig(SinkConfig):
    """Rows in a PostgreSQL table, written in batches with COPY; redelivered events never add rows.

    The table (created if missing) has ``_event_id`` (unique), ``_received_at``, ``_created_at``,
    the declared ``columns`` and, with ``unknown_fields: keep_json``, an ``_extra`` JSONB column.
    Names are always quoted, so any name PostgreSQL allows works."""

    type: Literal["postgres"]
    dsn: SecretStr | None = None
    """libpq connection string or URL (e.g. ``${DATABASE_URL}``); else the PG* environment
    variables. Never logged."""
    schema_name: str = Field(default="public", alias="schema")
    """Schema holding the table."""
    table: str
    """Table name (created if missing)."""
    columns: dict[str, PgType] = Field(default_factory=dict)
    """Event field: column type. Values PostgreSQL refuses for the type go to the dead-letter
    store one by one; the rest of the batch is stored."""
    ddl: str | None = None
    """A SQL file (relative to the pipeline file) that creates the table when it is missing,
    for types and constraints ``columns`` cannot say; its names resolve in ``schema``.
    headrace then adds its own columns (``_event_id``, ``_received_at``, ``_created_at``)."""
    pool_size: int = Field(default=2, ge=1, le=64)
    """Most connections the sink keeps open (writes use one; the health probe another)."""
    connect_timeout: Seconds = 10.0
    """How long to wait for a connection before the write is retried later."""
    derived: dict[str, DerivedTime] = Field(default_factory=dict)
    """timestamptz columns computed from a field, e.g. ``time_at: {source: time, unit: epoch_ms}``."""
    unknown_fields: Literal["keep_json", "evolve", "freeze"] = "keep_json"
    """Fields not in ``columns``: kept in the ``_extra`` JSONB column, added as new columns
    (``evolve``, ALTER TABLE ADD COLUMN), or refused (``freeze``: dead-letter store)."""
    write_mode: Literal["append", "merge"] = "append"
    """``append`` adds rows; ``merge`` keeps one row per ``dedupe_key``."""
    dedupe_key: list[str] = Field(default_factory=list)
    """Columns whose values identify a row (a unique index); required for ``merge``."""
    on_conflict: Literal["nothing", "update"] = "nothing"
    """With ``merge``: a row whose key exists is skipped, or replaces the stored values."""
    export: PostgresExport = PostgresExport()
    """What ``headrace export --sink`` writes."""

    @field_validator("schema_name", "table")
    @classmethod
    def _names(cls, value: str) -> str:
        return pg_identifier(value, "name")

    @model_validator(mode="after")
    def _consistent(self) -> PostgresConfig:
        lowered: dict[str, str] = {}
        for name in [*self.columns, *self.derived]:
            pg_identifier(name, "column")
            if name.startswith("_"):
                raise ValueError(f'column "{name}": names starting with "_" are headrace\'s')
            if name.lower() in lowered:
                raise ValueError(
                    f'columns "{lowered[name.lower()]}" and "{name}" differ only in case'
                )
            lowered[name.lower()] = name
        missing = [k for k in self.dedupe_key if k not in self.columns]
        if missing and self.ddl is None:  # with a ddl file, the table's columns are checked
            raise ValueError(f"dedupe_key names columns not in columns: {', '.join(missing)}")
        if self.write_mode == "merge" and not self.dedupe_key:
            raise ValueError("write_mode merge needs a dedupe_key")
        if self.write_mode == "append" and self.dedupe_key:
            # append stores every event once (by event id); a key that makes rows unique is
            # what merge means, and silently merging under "append" would surprise
            raise ValueError("dedupe_key needs write_mode: merge (append keeps every event)")
        if self.write_mode == "append" and self.on_conflict == "update":
            raise ValueError("on_conflict: update needs write_mode: merge")
        return self


def validate(config: PostgresConfig, context: ValidationContext) -> list[Problem]:
    """The ``dsn`` parses (never quoted back: it may hold a password) and the ``ddl`` file can be
    read, so a typo is found by ``headrace validate`` rather than at the first write."""
    problems: list[Problem] = []
    if config.dsn is not None:
        from headrace.sinks.postgres.connect import dsn_problem

        problem = dsn_problem(config.dsn.get_secret_value())
        if problem:
            problems.append((("dsn",), problem))
    if config.ddl is not None:
        ddl = Path(context.base_dir) / config.ddl
        try:
            text = ddl.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append((("ddl",), f"cannot read the ddl file {ddl}: {exc}"))
        else:
            if not text.strip():
                problems.append((("ddl",), f"the ddl file {ddl} is empty"))
    return problems


def resolve(config: PostgresConfig, context: ValidationContext) -> PostgresConfig:
    """The config with its ``ddl`` path made absolute (it is relative to the pipeline file)."""
    if config.ddl is None:
        return config
    return config.model_copy(update={"ddl": str((Path(context.base_dir) / config.ddl).resolve())})
