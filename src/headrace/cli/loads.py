"""``headrace loads list|show|retry|cancel`` and ``headrace load FILE|URL``."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from headrace.config.bulk import BulkExportSource
from headrace.errors import ConfigError, HeadraceError
from headrace.loads.history import CLI_SOURCE, STATUSES, LoadHistory

data_dir_option = click.option(
    "--data-dir",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="HEADRACE_DATA_DIR",
    default="headrace-data",
    show_default=True,
    help="Data directory holding the batch history (loads.db).",
)


def _history(data_dir: Path) -> LoadHistory:
    if not (data_dir / "loads.db").exists():
        raise click.UsageError(f"no load history in {data_dir} (no load has been recorded there)")
    return LoadHistory.in_data_dir(data_dir)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@click.group("loads")
def loads_group() -> None:
    """Inspect and operate bulk table loads (the batch history of bulk_export sources)."""


@loads_group.command("list")
@data_dir_option
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this status.")
@click.option("--table", help="Only jobs loading this table.")
@click.option("--source", help="Only jobs of this source.")
@click.option("--limit", default=50, show_default=True, help="Most jobs to show, newest first.")
def loads_list(
    data_dir: Path, status: str | None, table: str | None, source: str | None, limit: int
) -> None:
    """List load jobs, newest first."""
    history = _history(data_dir)
    jobs = history.find(status=status, table=table, source=source, limit=limit)
    click.echo(f"{'id':>6}  {'status':<8}  {'table':<20}  {'kind':<11}  {'rows':>10}  "
               f"{'bytes':>12}  {'tries':>5}  {'created (UTC)':<19}  error")  # fmt: skip
    for job in jobs:
        rows = "-" if job.rows is None else str(job.rows)
        size = "-" if job.bytes is None else str(job.bytes)
        error = (job.error or "").splitlines()[0][:60] if job.error else ""
        click.echo(
            f"{job.id:>6}  {job.status:<8}  {job.table_name[:20]:<20}  {job.kind:<11}  "
            f"{rows:>10}  {size:>12}  {job.attempts:>5}  {_when(job.created_at):<19}  {error}"
        )


@loads_group.command("show")
@data_dir_option
@click.argument("load_id", type=int)
def loads_show(data_dir: Path, load_id: int) -> None:
    """Show one load job in full."""
    history = _history(data_dir)
    try:
        job = history.get(load_id)
    except KeyError:
        raise click.UsageError(f"no load job {load_id}") from None
    for key, value in job.public().items():
        if key.endswith("_at"):
            value = _when(value)
        click.echo(f"{key + ':':<18} {'-' if value is None else value}")


@loads_group.command("retry")
@data_dir_option
@click.argument("load_id", type=int)
def loads_retry(data_dir: Path, load_id: int) -> None:
    """Run a failed, expired, skipped or loaded job again (from its staged file when it still
    has one, else by downloading it again). The running server picks it up."""
    _operate(data_dir, load_id, "retry")


@loads_group.command("cancel")
@data_dir_option
@click.argument("load_id", type=int)
def loads_cancel(data_dir: Path, load_id: int) -> None:
    """Stop a job that has not started loading (it ends as skipped)."""
    _operate(data_dir, load_id, "cancel")


def _operate(data_dir: Path, load_id: int, action: str) -> None:
    history = _history(data_dir)
    try:
        job = history.retry(load_id) if action == "retry" else history.cancel(load_id)
    except KeyError:
        raise click.UsageError(f"no load job {load_id}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"load {job.id}: {job.status}")


# -- headrace load ---------------------------------------------------------------------------


def _source_for(
    config_path: Path | None,
    source_id: str | None,
    postgres: str | None,
    duckdb: str | None,
    schema: str | None,
    ddl: Path | None,
    allow: tuple[str, ...],
) -> BulkExportSource:
    if config_path is not None:
        from headrace.config.load import load_pipeline

        try:
            pipeline = load_pipeline(config_path)
        except ConfigError as exc:
            raise click.ClickException("\n".join(str(p) for p in exc.problems)) from exc
        bulk = pipeline.bulk_sources()
        if source_id is None and len(bulk) == 1:
            source_id = next(iter(bulk))
        if source_id not in bulk:
            raise click.UsageError(
                f"--source names a bulk_export source of {config_path} "
                f"(there: {', '.join(bulk) or 'none'})"
            )
        return bulk[source_id]
    if (postgres is None) == (duckdb is None):
        raise click.UsageError("give --config, or one of --postgres DSN and --duckdb FILE")
    warehouse: dict[str, Any] = (
        {"type": "postgres", "dsn": postgres} if postgres is not None
        else {"type": "duckdb", "path": str(Path(duckdb or "").resolve())}
    )  # fmt: skip
    if schema:
        warehouse["schema"] = schema
    return BulkExportSource.model_validate(
        {
            "type": "bulk_export",
            "path": "/cli-load",
            "warehouse": warehouse,
            "schemas": str(ddl.resolve()) if ddl else None,
            "fetch": {"allow_networks": list(allow)},
            "max_attempts": 1,
        }
    )


@contextlib.contextmanager
def _bar(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeElapsedColumn(), console=Console(stderr=True),
    ) as bar:  # fmt: skip
        yield bar


@click.command("load")
@click.argument("location")
@click.option("--table", "-t", required=True, help="Table to load into.")
@click.option(
    "--mode",
    "-m",
    type=click.Choice(["full", "incremental"]),
    required=True,
    help="full: replace the table atomically; incremental: append (or merge, per the source).",
)
@click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    help="Pipeline file whose bulk_export source gives the warehouse and settings.",
)  # fmt: skip
@click.option("--source", "source_id", help="Which bulk_export source of --config.")
@click.option("--postgres", help="Load into this PostgreSQL database (DSN) instead.")
@click.option("--duckdb", help="Load into this DuckDB file instead.")
@click.option("--schema", help="Database schema holding the table (with --postgres/--duckdb).")
@click.option(
    "--ddl", type=click.Path(exists=True, path_type=Path),
    help="DDL file (ControlShift's tables.sql, pg_dump --schema-only), or folder of "
    "<table>.sql files, defining the table.",
)  # fmt: skip
@click.option(
    "--allow-network", "allow", multiple=True,
    help="Network (CIDR) a URL may resolve to although it is not public (repeatable).",
)  # fmt: skip
@data_dir_option
def load_command(
    location: str,
    table: str,
    mode: str,
    config_path: Path | None,
    source_id: str | None,
    postgres: str | None,
    duckdb: str | None,
    schema: str | None,
    ddl: Path | None,
    allow: tuple[str, ...],
    data_dir: Path,
) -> None:
    """Load a CSV export (a local FILE, or a URL to download) into a table, by hand.

    The file may be .csv, .csv.gz or .csv.bz2 with a header row. The job is recorded in the
    batch history like a webhook's (see `headrace loads list`). Examples:

      headrace load signatures.csv.gz -t signatures -m full --postgres postgresql:///crm

      headrace load 'https://exports.example/members.csv?sig=…' -t members -m incremental -c pipeline.yaml
    """
    from headrace.loads.csvfile import compression_of
    from headrace.loads.webhook import RESERVED_PREFIXES
    from headrace.loads.worker import LoadRunner

    if table.lower().startswith(RESERVED_PREFIXES):
        raise click.BadParameter(
            "names starting with _headrace_ or _hr_ are headrace's own", param_hint="--table"
        )
    source = _source_for(config_path, source_id, postgres, duckdb, schema, ddl, allow)
    local = Path(location)
    is_url = "://" in location
    if not is_url and not local.is_file():
        raise click.UsageError(f"{location}: no such file")
    url = location if is_url else local.resolve().as_uri()
    runner = LoadRunner(CLI_SOURCE, source, data_dir, threading.Event())
    history = runner.history  # one connection to the loads table for the whole command
    job, _ = history.record(CLI_SOURCE, table, mode, url, dedupe_window=0)
    started = time.monotonic()
    job = history.claim(job.id, runner.owner, lease=24 * 3600)
    try:
        with _bar(sys.stderr.isatty()) as bar:
            if is_url:
                task = bar.add_task("download", total=None) if bar else None

                def fetched(done: int, total: int | None) -> None:
                    if bar is not None:
                        bar.update(task, completed=done, total=total)

                runner.fetch(job, fetched)
            else:
                runner.stage_local(job, local)
            job = history.get(job.id)
            if job.status == "staged":
                # the warehouses report uncompressed bytes: a total only for a plain file
                staged = Path(job.staged_path or "")
                total = staged.stat().st_size if compression_of(staged) == "none" else None
                task = bar.add_task(f"load {table}", total=total) if bar else None

                def loaded(n: int) -> None:
                    if bar is not None:
                        bar.advance(task, n)

                runner.load([job], loaded)
    except HeadraceError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        runner.warehouse.close()
    job = history.get(job.id)
    if job.status != "loaded":
        raise click.ClickException(f"load {job.id} {job.status}: {job.error}")
    click.echo(
        f"load {job.id}: loaded {job.rows} rows into {table} from {job.bytes} bytes "
        f"in {time.monotonic() - started:.1f}s"
    )
