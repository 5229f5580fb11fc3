"""Loading CSV exports into Amazon Redshift: S3 staging, a manifest, and ``COPY … MANIFEST``.

Each batch's files are uploaded under ``<s3_prefix>/<batch key>/``; files that share a header
and a compression are listed in one manifest (``{"entries": [{"url": …, "mandatory": true,
"meta": {"content_length": …}}]}``) and loaded by one ``COPY … FROM '<manifest url>' IAM_ROLE
… MANIFEST FORMAT AS CSV IGNOREHEADER 1 [GZIP|BZIP2] EMPTYASNULL BLANKSASNULL`` statement.
The statements of a batch run in one transaction with the same replace / append / merge
dispositions as the other warehouses (merge is Redshift's staging-table upsert: delete the
matching keys, insert). After each COPY, ``pg_last_copy_count()`` (same session, before the
COMMIT) says how many rows it loaded: a count per manifest, so a file has its own count only
when it is alone in its manifest.

No Redshift is reachable from headrace's tests or CI: the generated manifests and statements
are checked as text against recording fakes of the two seams below (``Uploader``,
``Executor``); the real ones (boto3 for S3, psycopg for the cluster) are used otherwise.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field, SecretStr

from headrace.config.base import WarehouseConfig
from headrace.drivers.postgres import lost_connection_errors
from headrace.errors import TerminalLoadError, TransientLoadError, TransientSinkError
from headrace.loads.csvfile import CsvFile
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


class Uploader(Protocol):
    """Puts bytes at an ``s3://bucket/key`` URL."""

    def put(self, url: str, data: bytes | None = None, path: str | None = None) -> None: ...


class Executor(Protocol):
    """Runs one SQL statement on the cluster and returns its rows."""

    def execute(self, statement: str) -> list[tuple[Any, ...]]: ...


def redshift_type(column: Column) -> str:
    """The Redshift type a DDL type loads as: Redshift's own ``varchar(max)`` as it is; hstore,
    json, text and arrays as VARCHAR(65535) (Redshift's TEXT is only 256 bytes)."""
    pg = column.type.lower()
    if pg.endswith("[]"):  # Redshift has no arrays: the text form, as it comes in the CSV
        return "VARCHAR(65535)"
    if pg.startswith(("character varying", "varchar", "character(", "char(")):
        return pg.upper()
    if pg in ("smallint", "integer", "bigint", "real", "double precision", "boolean", "date",
              "timestamp without time zone", "timestamp with time zone") or pg.startswith(
        ("numeric(", "decimal(")
    ):  # fmt: skip
        return pg.upper()
    return "VARCHAR(65535)"


@dataclass(frozen=True)
class Statements:
    """What one batch sends: manifests to upload, then SQL to run in order."""

    manifests: dict[str, str]  # s3 url: manifest JSON
    sql: list[str]
    copies: dict[int, list[int]]  # index in sql of each COPY: the plan's files it loads


class RedshiftWarehouseConfig(WarehouseConfig):
    """Amazon Redshift: files are staged under an S3 prefix with a manifest and loaded with
    ``COPY … FROM 's3://…/manifest' MANIFEST``. No Redshift is reachable from headrace's CI:
    the statements are tested as text, not against a server."""

    type: Literal["redshift"]
    dsn: SecretStr | None = None
    """Connection string of the cluster (Redshift speaks the PostgreSQL protocol)."""
    schema_name: str = Field(default="public", alias="schema")
    """Schema holding the loaded tables."""
    s3_prefix: str = Field(pattern=r"^s3://[a-z0-9.\-]{3,63}(/.*)?$")
    """Where staged files and manifests go, e.g. ``s3://exports-bucket/headrace/``."""
    iam_role: str
    """IAM role ARN Redshift assumes to read the prefix."""
    region: str | None = None
    """Region of the bucket, when it is not the cluster's."""


class RedshiftLoader:
    """A Redshift warehouse; see the module docstring."""

    def __init__(
        self,
        config: RedshiftWarehouseConfig,
        uploader: Uploader | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.schema = config.schema_name
        self.prefix = config.s3_prefix.rstrip("/")
        self.name = f"redshift schema {self.schema}"
        self._uploader = uploader
        self._executor = executor

    def _table(self, name: str) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(name)}"

    def file_url(self, plan: LoadPlan, index: int, file: CsvFile) -> str:
        return f"{self.prefix}/{plan.batch_key}/{index:04d}-{file.path.name}"

    def statements(self, plan: LoadPlan) -> Statements:
        """The manifests and SQL for ``plan`` (pure: nothing is sent)."""
        groups: dict[tuple[tuple[str, ...], str], list[tuple[int, CsvFile]]] = {}
        for index, file in enumerate(plan.files):
            groups.setdefault((tuple(file.header), file.compression), []).append((index, file))
        manifests: dict[str, str] = {}
        copies: list[tuple[str, tuple[str, ...], str, list[int]]] = []
        for number, ((header, compression), files) in enumerate(groups.items()):
            url = f"{self.prefix}/{plan.batch_key}/manifest-{number}.json"
            entries = [
                {"url": self.file_url(plan, i, f), "mandatory": True,
                 "meta": {"content_length": f.bytes}}
                for i, f in files
            ]  # fmt: skip
            manifests[url] = json.dumps({"entries": entries}, indent=2)
            copies.append((url, header, compression, [i for i, _ in files]))
        tag = hashlib.sha256(plan.table.encode()).hexdigest()[:16]
        target = self._table(plan.table)
        staging = self._table(f"_hr_new_{tag}")
        marker = self._table(MARKER_TABLE)
        sql = [
            f"CREATE TABLE IF NOT EXISTS {marker} (batch_key VARCHAR(64) PRIMARY KEY, "
            "table_name VARCHAR(127) NOT NULL, mode VARCHAR(16) NOT NULL, "
            "loaded_at TIMESTAMP DEFAULT SYSDATE)",
            "BEGIN",
        ]
        definition = self._definition(plan.schema)
        into = target
        if plan.mode == "replace":
            sql += [f"DROP TABLE IF EXISTS {staging}", f"CREATE TABLE {staging} ({definition})"]
            into = staging
        elif plan.mode == "merge":
            sql += [
                f"CREATE TABLE IF NOT EXISTS {target} ({definition})",
                f"CREATE TEMP TABLE _hr_merge (LIKE {target})",
            ]
            into = "_hr_merge"
        else:
            sql.append(f"CREATE TABLE IF NOT EXISTS {target} ({definition})")
        loads: dict[int, list[int]] = {}
        for url, header, compression, indexes in copies:
            loads[len(sql)] = indexes
            sql.append(self._copy(into, header, compression, url, plan.empty_as_null))
        if plan.mode == "replace":
            old = f"_hr_old_{tag}"
            sql += [
                f"CREATE TABLE IF NOT EXISTS {target} (LIKE {staging})",
                f"ALTER TABLE {target} RENAME TO {quote_ident(old)}",
                f"ALTER TABLE {staging} RENAME TO {quote_ident(plan.table)}",
                f"DROP TABLE {self._table(old)}",
            ]
        elif plan.mode == "merge":
            match = " AND ".join(
                f"{target}.{quote_ident(k)} = _hr_merge.{quote_ident(k)}" for k in plan.primary_key
            )
            sql += [
                f"DELETE FROM {target} USING _hr_merge WHERE {match}",
                f"INSERT INTO {target} SELECT * FROM _hr_merge",
                "DROP TABLE _hr_merge",
            ]
        sql += [
            f"INSERT INTO {marker} (batch_key, table_name, mode) VALUES "
            f"({quote_literal(plan.batch_key)}, {quote_literal(plan.table)}, "
            f"{quote_literal(plan.mode)})",
            "COMMIT",
        ]
        return Statements(manifests, sql, loads)

    def _definition(self, schema: TableSchema) -> str:
        parts = column_definitions(schema, redshift_type)
        if schema.primary_key:
            parts.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in schema.primary_key)})")
        return ", ".join(parts)

    def _copy(
        self, into: str, header: Sequence[str], compression: str, manifest: str, nulls: bool
    ) -> str:
        columns = ", ".join(quote_ident(h) for h in header)
        options = ["MANIFEST", "FORMAT AS CSV", "IGNOREHEADER 1"]
        if compression == "gzip":
            options.append("GZIP")
        elif compression == "bzip2":
            options.append("BZIP2")
        if nulls:
            options += ["EMPTYASNULL", "BLANKSASNULL"]
        options += ["TIMEFORMAT 'auto'", "DATEFORMAT 'auto'", "ACCEPTINVCHARS"]
        if self.config.region:
            options.append(f"REGION {quote_literal(self.config.region)}")
        return (
            f"COPY {into} ({columns}) FROM {quote_literal(manifest)} "
            f"IAM_ROLE {quote_literal(self.config.iam_role)} {' '.join(options)}"
        )

    # -- the seams ------------------------------------------------------------------------

    def _seams(self) -> tuple[Uploader, Executor]:
        if self._uploader is None:
            self._uploader = _Boto3Uploader(self.config.region)
        if self._executor is None:
            dsn = self.config.dsn.get_secret_value() if self.config.dsn else ""
            self._executor = _PsycopgExecutor(dsn)
        return self._uploader, self._executor

    def existing_schema(self, table: str) -> TableSchema | None:
        _, executor = self._seams()
        rows = executor.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = "
            f"{quote_literal(self.schema)} AND table_name = {quote_literal(table)} "
            "ORDER BY ordinal_position"
        )
        if not rows:
            return None
        return TableSchema(table, tuple(Column(str(n), str(t)) for n, t in rows), (), "existing")

    def load(self, plan: LoadPlan, progress: Progress | None, stop: threading.Event) -> LoadResult:
        uploader, executor = self._seams()
        statements = self.statements(plan)
        marker = self._table(MARKER_TABLE)
        executor.execute(statements.sql[0])
        done = executor.execute(
            f"SELECT 1 FROM {marker} WHERE batch_key = {quote_literal(plan.batch_key)}"
        )
        if done:
            return LoadResult([], already_loaded=True)
        for index, file in enumerate(plan.files):
            if stop.is_set():
                raise TransientLoadError("interrupted", "stopped")
            uploader.put(self.file_url(plan, index, file), path=str(file.path))
            if progress is not None:
                progress(file.bytes)
        for url, manifest in statements.manifests.items():
            uploader.put(url, data=manifest.encode())
        rows: list[int | None] = [None] * len(plan.files)
        loaded = 0
        try:
            for index, statement in enumerate(statements.sql[1:], start=1):
                executor.execute(statement)
                files = statements.copies.get(index)
                if files is None:
                    continue
                # the session's last COPY, counted before COMMIT; a manifest's files are
                # counted together, so only a file loaded alone gets its own count
                copied = int(executor.execute("SELECT pg_last_copy_count()")[0][0])
                loaded += copied
                if len(files) == 1:
                    rows[files[0]] = copied
        except Exception:
            executor.execute("ROLLBACK")
            raise
        count = executor.execute(f"SELECT count(*) FROM {self._table(plan.table)}")
        return LoadResult(
            rows, rows_in_table=int(count[0][0]) if count else None, rows_loaded=loaded
        )

    def close(self) -> None:
        pass


class _Boto3Uploader:
    def __init__(self, region: str | None) -> None:
        try:
            import boto3  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise TerminalLoadError(
                "missing_dependency", "the redshift warehouse needs boto3"
            ) from exc
        self.client = boto3.client("s3", region_name=region)

    def put(self, url: str, data: bytes | None = None, path: str | None = None) -> None:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        try:
            if path is not None:
                self.client.upload_file(path, bucket, key)
            else:
                self.client.put_object(Bucket=bucket, Key=key, Body=data or b"")
        except Exception as exc:
            raise TransientLoadError("staging_failed", f"cannot upload to {url}: {exc}") from exc


class _PsycopgExecutor:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
            cursor = self.conn.execute(statement.encode())
            return list(cursor.fetchall()) if cursor.description else []
        except lost_connection_errors() as exc:
            raise TransientLoadError("warehouse_unavailable", f"Redshift: {exc}") from exc
        except psycopg.Error as exc:
            raise TerminalLoadError("rejected_by_warehouse", f"Redshift: {exc}") from exc


def build(config: RedshiftWarehouseConfig, data_dir: Path) -> RedshiftLoader:
    """The warehouse of a source's config (what the registry builds)."""
    return RedshiftLoader(config)


register(
    "warehouse", "redshift", config=RedshiftWarehouseConfig,
    implementation="headrace.loads.warehouses.redshift:build",
    healthcheck="headrace.loads.warehouses.redshift:healthcheck",
)  # fmt: skip


def healthcheck(config: Any) -> str | None:
    """Connect to the warehouse (nothing is written)."""
    from headrace.sinks.postgres.connect import connect

    dsn = config.dsn.get_secret_value() if config.dsn else ""
    try:
        connect(dsn, 10.0).close()
    except TransientSinkError as exc:
        return str(exc)
    return None
