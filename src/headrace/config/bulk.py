"""Pipeline-file models of bulk table loads: the ``bulk_export`` source and its warehouse.

A ``bulk_export`` source is a webhook endpoint (ControlShift's ``data.full_table_exported`` /
``data.incremental_table_exported``) whose events are not stored as rows but turned into load
jobs: download the CSV export the event points at, stage it, load it into a warehouse table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from headrace.config.base import (
    Bytes,
    Limits,
    Model,
    Seconds,
    WarehouseConfig,
    network_list,
    pg_identifier,
)
from headrace.config.sources import Authorizer
from headrace.registry import ComponentUnion, rebuild_on_registration

Warehouse = Annotated[WarehouseConfig, ComponentUnion("warehouse")]
"""One of the registered warehouse configs, chosen by ``type``."""


class FetchSettings(Model):
    """How export files are downloaded. The URL comes from a request body, so it is treated as
    hostile: only http(s), every resolved address checked, redirects followed one by one."""

    max_bytes: Bytes = 20 * 1024**3
    """Largest file (as sent, compressed or not); larger fails with ``too_large``."""
    max_decompressed_bytes: Bytes = 100 * 1024**3
    """Most bytes a file may hold once decompressed; more fails the job with
    ``decompressed_too_large`` (a few KB of bzip2 can expand to many GB)."""
    max_compression_ratio: float = Field(default=200.0, ge=1.0)
    """A compressed file may expand to at most this many times its size (but always to 64 MiB);
    CSV exports compress about 5-20 times, decompression bombs thousands of times."""
    connect_timeout: Seconds = 10.0
    """Longest wait for a TCP (and TLS) connection."""
    read_timeout: Seconds = 60.0
    """Longest wait for the next bytes of an answer."""
    total_timeout: Seconds = 6 * 3600.0
    """Longest a whole download (all redirects and bytes) may take."""
    attempts: int = Field(default=4, ge=1, le=20)
    """Tries of one download on a timeout, a lost connection, a 429 or a 5xx."""
    backoff: Seconds = 1.0
    """First wait between tries (doubled each time)."""
    max_redirects: int = Field(default=5, ge=0, le=20)
    """Redirects followed; each target is checked like the first URL."""
    allow_networks: list[str] = Field(default_factory=list)
    """Networks (CIDR) that may be fetched even though they are loopback, private, link-local
    or otherwise not public, e.g. ``10.1.2.0/24`` for an in-house export server. Empty: only
    public addresses."""

    _networks = field_validator("allow_networks")(network_list)


class LoadBatching(Model):
    """When staged incremental files of one table are loaded together: whichever comes first."""

    max_files: int = Field(default=20, ge=1)
    """Most files in one load."""
    max_bytes: Bytes = 2 * 1024**3
    """Most bytes (as downloaded) in one load."""
    max_age: Seconds = 30.0
    """Longest a staged file waits for others (a timer: no trigger file is needed)."""


class NotifySettings(Model):
    """An outbound webhook sent when a job ends, signed per the Standard Webhooks spec
    (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64>``)."""

    url: str = Field(pattern=r"^https?://")
    """Where to POST ``{"type": "load.loaded" | "load.failed" | "load.expired", "data": {...}}``."""
    secret: SecretStr
    """Signing secret, ``whsec_`` followed by base64 (as Standard Webhooks senders use)."""
    on: list[Literal["loaded", "failed", "expired"]] = ["loaded", "failed", "expired"]
    """Which endings are announced."""
    timeout: Seconds = 10.0
    """Longest wait for the receiver's answer; failures are retried with backoff."""

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        from headrace.standard_webhooks import secret_key

        secret_key(value.get_secret_value())
        return value


@rebuild_on_registration
class BulkExportSource(Model):
    """A table-export webhook (ControlShift-style ``data.full_table_exported`` /
    ``data.incremental_table_exported``). Each accepted event becomes a load job: the CSV at
    ``data.url`` is downloaded, staged and loaded into ``data.table`` (a full export replaces
    the table atomically; an incremental one appends or merges). Other event types answer 200
    ``{"status": "skipped"}``. Every 200 carries ``x-controlshift-processed: 1`` (as
    ControlShift's reference receiver answers); refusals and failures do not. ``data.url`` is
    fetched as JSON decoding gives it (ControlShift's ``\\u0026`` is ``&``); nothing else is
    unescaped, so an ``&amp;`` in it is sent as is."""

    # the authorizer and warehouse unions are known once every component has registered
    model_config = ConfigDict(**Model.model_config, defer_build=True)

    type: Literal["bulk_export"]
    path: str
    """URL path the webhook is POSTed to, e.g. ``/webhooks/controlshift``."""
    auth: list[Authorizer] = Field(default_factory=list)
    """Authorizers, as for http sources (e.g. ``{type: hmac, preset: controlshift, ...}``)."""
    warehouse: Warehouse
    """Where tables are loaded: ``postgres``, ``duckdb`` or ``redshift``."""
    tables: list[str] | None = None
    """Tables that may be loaded; none: any table whose name is a plain identifier."""
    unknown_table: Literal["skip", "reject"] = "skip"
    """A table not in ``tables``: answered 200 ``skipped`` (and recorded), or refused with 422."""
    schemas: str | None = None
    """A DDL file (ControlShift's Redshift-flavoured ``tables.sql``, or ``pg_dump
    --schema-only``) or a directory of ``<table>.sql`` files, relative to the pipeline file,
    giving each table's columns and primary key. Its DROP statements are skipped;
    ``varchar(max)`` is ``text`` in PostgreSQL and DuckDB and stays ``varchar(max)`` in
    Redshift; a type that cannot be loaded fails the job naming the file, line, table and
    column. A table without one keeps its existing definition, or gets one inferred from the
    CSV header and values."""
    incremental: Literal["append", "merge"] = "append"
    """Incremental exports are appended, or merged on the primary key (a row whose key exists
    replaces it)."""
    primary_keys: dict[str, list[str]] = Field(default_factory=dict)
    """Table: key columns, for ``merge`` where the DDL names none."""
    empty_as_null: bool = True
    """Empty CSV fields (quoted or not) load as NULL."""
    infer_rows: int = Field(default=100_000, ge=100)
    """Rows read to infer column types when a table has no DDL and does not exist yet."""
    fetch: FetchSettings = FetchSettings()
    """How files are downloaded."""
    batch: LoadBatching = LoadBatching()
    """How incremental files are combined into loads."""
    lease: Seconds = Field(default=120.0, gt=0)
    """How long a worker holds a job without renewing (it renews while it works); a job whose
    worker died is taken up again once its lease has run out."""
    max_attempts: int = Field(default=5, ge=1)
    """Attempts to download a job's file, then to load it, before the job is marked
    ``failed``: retriable errors, and attempts whose worker died (reason ``crashed``)."""
    retry_backoff: Seconds = 30.0
    """First wait before a failed attempt is retried (doubled each time)."""
    dedupe_window: Seconds = 7 * 86400.0
    """The same export (table, kind and URL path) delivered again within this time is loaded
    once."""
    notify: NotifySettings | None = None
    """Outbound webhook announcing each job's end."""
    limits: Limits | None = None
    """Request limits for this webhook; defaults to the pipeline's ``limits``."""

    @field_validator("auth", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("path")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError('must start with "/"')
        if "{" in value:
            raise ValueError("a bulk_export path takes no parameters")
        if value.rstrip("/") in ("/healthz", "/readyz", "/metrics") or value.startswith(
            ("/_", "/v1/")
        ):
            raise ValueError(f'"{value}" is reserved by headrace')
        return value

    @field_validator("tables")
    @classmethod
    def _table_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            pg_identifier(name, "table")
            if name.lower().startswith(("_headrace_", "_hr_")):
                raise ValueError(f'"{name}": names starting with _headrace_ or _hr_ are reserved')
        return value

    @model_validator(mode="after")
    def _keys_named(self) -> BulkExportSource:
        if self.tables is not None:
            unknown = [t for t in self.primary_keys if t not in self.tables]
            if unknown:
                raise ValueError(f"primary_keys names tables not in tables: {', '.join(unknown)}")
        return self

    def table_allowed(self, table: str) -> bool:
        """Whether ``table`` may be loaded."""
        return self.tables is None or table in self.tables

    def with_base(self, base: Path) -> BulkExportSource:
        """This source with ``schemas`` made absolute against ``base`` (the pipeline's folder)."""
        if self.schemas is None or Path(self.schemas).is_absolute():
            return self
        return self.model_copy(update={"schemas": str(base / self.schemas)})
