"""The ``headrace`` command line."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from headrace.config.models import Pipeline, default_pipeline
from headrace.config.sources import HttpSource
from headrace.errors import ConfigError, HeadraceError
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.postgres.config import PostgresConfig

DEFAULT_DATA_DIR = "headrace-data"

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="HEADRACE_CONFIG",
    help="Pipeline file (YAML). Without one, the built-in default "
    "pipeline takes any stream at POST /v1/streams/{stream}/events into the local lake.",
)
data_dir_option = click.option(
    "--data-dir",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="HEADRACE_DATA_DIR",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Directory for the buffer, the state database and the lake.",
)


def _load(config_path: Path | None) -> Pipeline:
    if config_path is None:
        return default_pipeline()
    from headrace.config.load import load_pipeline

    try:
        return load_pipeline(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        raise SystemExit(2) from exc


def _parse_time(name: str, value: str | None) -> int | None:
    from headrace.query.lake import QueryError, parse_time_param

    if value is None:
        return None
    try:
        return parse_time_param(name, value)
    except QueryError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc


def _source_of_stream(pipeline: Pipeline, stream: str) -> str:
    if stream in pipeline.sources:
        return stream
    for source_id, source in pipeline.sources.items():
        if isinstance(source, HttpSource) and source.path and "{stream}" in source.path:
            return source_id
    raise click.UsageError(f'no source takes the stream "{stream}"')


def _lake_sink(
    pipeline: Pipeline, stream: str | None, sink_name: str | None
) -> tuple[str, LakeConfig]:
    """The lake sink to export ``stream`` from (``--sink``, else the first storing it)."""
    found: tuple[str, LakeConfig] | None = None
    if sink_name is not None:
        sink = pipeline.sinks.get(sink_name)
        if sink is None:
            raise click.UsageError(
                f'no sink named "{sink_name}" (sinks: {", ".join(pipeline.sinks)})'
            )
        if not isinstance(sink, LakeConfig):
            raise click.UsageError(
                f'sink "{sink_name}" ({sink.type}) cannot be exported from: name a lake or '
                "postgres sink"
            )
        found = sink_name, sink
    if stream is None:
        raise click.UsageError("name a --stream (or a postgres --sink)")
    if found is None:
        from headrace.query.targets import lake_for_source

        found = lake_for_source(pipeline, _source_of_stream(pipeline, stream))
        if found is None:
            raise click.UsageError(f'no lake sink stores the stream "{stream}"')
    return found


@contextlib.contextmanager
def _progress(description: str, total: int | None, enabled: bool) -> Iterator[Any]:
    """A progress bar on a terminal (stderr); a no-op elsewhere."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="headrace")
def main() -> None:
    """headrace: receive events over HTTP, keep every acknowledged one, deliver them in batches.

    Start with `headrace serve` and POST JSON to
    http://127.0.0.1:8080/v1/streams/<stream>/events; read it back with
    GET on the same URL or `headrace export --stream <stream>`.
    """


@main.command()
@config_option
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", "-p", default=8080, show_default=True, help="Port to listen on.")
@click.option("--workers", "-w", default=0, help="Ingest worker processes (default: one per core).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="json writes one object per line, for log collectors.",
)
@click.option(
    "--noop-endpoint",
    is_flag=True,
    hidden=True,
    help="Expose POST /_noop (reads the body, stores nothing): the benchmark's ceiling.",
)
def serve(
    config_path: Path | None,
    data_dir: Path,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    log_format: str,
    noop_endpoint: bool,
) -> None:
    """Run the HTTP ingest workers and the delivery process until SIGTERM or Ctrl-C.

    A 2xx answer means the events are on disk (fsync'd) and will be delivered at least once,
    whatever happens to the process afterwards.
    """
    from headrace.server.supervisor import ServeOptions
    from headrace.server.supervisor import serve as run_server
    from headrace.telemetry.logs import setup_logging

    pipeline = _load(config_path)
    log_cfg = {"level": log_level, "fmt": log_format}
    setup_logging(**log_cfg)
    options = ServeOptions(
        data_dir=data_dir.resolve(),
        host=host,
        port=port,
        workers=workers,
        noop_endpoint=noop_endpoint,
        log_cfg=log_cfg,
    )
    try:
        raise SystemExit(run_server(pipeline, options))
    except (HeadraceError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from exc


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to every sink, warehouse and service the file names (writing nothing) "
    "and report what is unreachable.",
)
def validate(file: Path, connect: bool) -> None:
    """Check a pipeline file and report every problem with its line and path.

    Without --connect nothing is connected to. Exit status 0 when the file is usable (and, with
    --connect, everything it names answers), 1 when it is not.
    """
    from headrace.config.load import load_pipeline

    try:
        pipeline = load_pipeline(file)
    except ConfigError as exc:
        problems = sorted(exc.problems, key=lambda p: (p.line or 0, p.path))
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"{file}: {len(problems)} problem(s)", err=True)
        raise SystemExit(1) from exc
    click.echo(
        f"{file}: ok ({len(pipeline.sources)} source(s), {len(pipeline.transforms)} transform(s), "
        f"{len(pipeline.sinks)} sink(s))"
    )
    if connect:
        from headrace.healthchecks import check_pipeline

        unreachable = 0
        for where, why in check_pipeline(pipeline):
            if why is None:
                click.echo(f"  {where}: reachable")
            else:
                unreachable += 1
                click.echo(f"error: {where}: unreachable: {why}", err=True)
        if unreachable:
            click.echo(f"{file}: {unreachable} unreachable", err=True)
            raise SystemExit(1)


@main.command()
@config_option
@data_dir_option
@click.option("--stream", "-s", help="Stream to export (from its lake sink).")
@click.option("--since", help="Only events at or after this time (ISO 8601 or epoch s/ms).")
@click.option("--until", help="Only events before this time (ISO 8601 or epoch s/ms).")
@click.option(
    "--where",
    "-w",
    "where",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Only events whose field equals the value; repeat for several.",
)
@click.option("--sink", help="Lake sink to read (default: the one storing the stream).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV file to write (default: standard output).",
)
@click.option(
    "--spreadsheet-safe",
    is_flag=True,
    help="Prefix text cells starting with = + - @ (or tab, CR) with ' so that a spreadsheet "
    "shows them instead of running them as formulas (use for files opened in Excel).",
)
def export(
    config_path: Path | None,
    data_dir: Path,
    stream: str,
    since: str | None,
    until: str | None,
    where: tuple[str, ...],
    sink: str | None,
    output: Path | None,
    spreadsheet_safe: bool,
) -> None:
    """Write events as CSV (header row, RFC 4180 quoting), oldest first.

    From the lake: --stream S (times are event times, or receive times without a time field).
    From PostgreSQL: --sink NAME of a postgres sink; --where takes any column, --since/--until
    filter the sink's export.time_column, and export.columns gives the header names.
    """
    from headrace.query.lake import LakeQuery, count_events, export_csv

    pipeline = _load(config_path)
    chosen = pipeline.sinks.get(sink) if sink else None
    if isinstance(chosen, PostgresConfig):
        _export_postgres(chosen, since, until, where, output, spreadsheet_safe)
        return
    sink_id, sink_config = _lake_sink(pipeline, stream, sink)
    assert stream is not None  # _lake_sink refuses an export without one
    filters = _where_pairs(where)
    query = LakeQuery(
        sink_id,
        stream,
        _parse_time("--since", since),
        _parse_time("--until", until),
        filters,
        newest_first=False,
    )
    show = sys.stderr.isatty()
    total = count_events(data_dir, sink_id, sink_config, query) if show else None
    started = time.monotonic()
    out: TextIO
    with contextlib.ExitStack() as stack:
        if output is None:
            out = sys.stdout
        else:
            out = stack.enter_context(open(output, "w", newline="", encoding="utf-8"))
        with _progress(f"exporting {stream}", total, show) as advance:
            rows = export_csv(
                data_dir, sink_id, sink_config, query, out, advance, safe=spreadsheet_safe
            )
    if output is not None or show:
        where_to = output or "standard output"
        click.echo(
            f"wrote {rows} row(s) to {where_to} in {time.monotonic() - started:.1f}s", err=True
        )


def _where_pairs(where: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for item in where:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f'"{item}" is not FIELD=VALUE', param_hint="--where")
        pairs.append((name, value))
    return pairs


def _export_postgres(
    sink: PostgresConfig,
    since: str | None,
    until: str | None,
    where: tuple[str, ...],
    output: Path | None,
    safe: bool = False,
) -> None:
    from headrace.query.lake import QueryError
    from headrace.query.postgres import PostgresExport

    show = sys.stderr.isatty()
    started = time.monotonic()
    selection = PostgresExport(
        sink, since_us=_parse_time("--since", since), until_us=_parse_time("--until", until),
        where=_where_pairs(where), safe=safe,
    )  # fmt: skip
    try:
        with contextlib.ExitStack() as stack:
            export = stack.enter_context(selection)
            out = sys.stdout.buffer if output is None else stack.enter_context(open(output, "wb"))
            total = export.count() if show else None  # the bar's end, only where it shows
            with _progress(f"exporting {sink.table}", total, show) as advance:
                rows = export.write_csv(out, advance if show else None)
            out.flush()
    except QueryError as exc:
        raise click.UsageError(str(exc)) from exc
    if output is not None or show:
        click.echo(
            f"wrote {rows} row(s) to {output or 'standard output'} in {time.monotonic() - started:.1f}s",
            err=True,
        )


@main.command()
@config_option
@data_dir_option
@click.option("--stream", "-s", required=True, help="Stream whose events to deliver again.")
@click.option("--since", required=True, help="Received at or after (ISO 8601 or epoch s/ms).")
@click.option("--until", required=True, help="Received before (ISO 8601 or epoch s/ms).")
@click.option(
    "--sink", "sinks", multiple=True, help="Only to this sink (repeatable; default: all)."
)
def replay(
    config_path: Path | None,
    data_dir: Path,
    stream: str,
    since: str,
    until: str,
    sinks: tuple[str, ...],
) -> None:
    """Deliver a time range of a stream again from the buffer's retained data.

    Events keep their ids, so a sink that already holds one does not store it twice. A running
    server delivers them within a second; otherwise they go out when it next starts. Data older
    than the buffer's retention is gone.
    """
    from headrace.buffer import open_buffer

    pipeline = _load(config_path)
    source_id = _source_of_stream(pipeline, stream)
    consumers = pipeline.sinks_for_source(source_id)
    for name in sinks:
        if name not in consumers:
            raise click.UsageError(
                f'sink "{name}" does not receive the stream (sinks: {", ".join(consumers)})'
            )
    since_us, until_us = _parse_time("--since", since), _parse_time("--until", until)
    assert since_us is not None and until_us is not None
    if until_us <= since_us:
        raise click.BadParameter("must be after --since", param_hint="--until")
    with _progress(f"queueing {stream}", None, sys.stderr.isatty()) as advance:
        buffer = open_buffer(pipeline.buffer, data_dir)
        count = buffer.replay(stream, since_us, until_us, list(sinks) or None, advance)
    click.echo(
        f"queued {count} event(s) of {stream} for delivery to {', '.join(sinks) or 'all its sinks'}"
    )


@main.command()
@click.option("--recipe", "-r", help="Recipe to write (see --list).")
@click.option("--list", "list_recipes", is_flag=True, help="List the recipes.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("pipeline.yaml"), show_default=True, help="File to write.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(recipe: str | None, list_recipes: bool, output: Path, force: bool) -> None:
    """Write a ready-made pipeline file for one of headrace's jobs."""
    from headrace.recipes import RECIPES

    if list_recipes or recipe is None:
        for name, (summary, _) in RECIPES.items():
            click.echo(f"{name:<20} {summary}")
        if recipe is None and not list_recipes:
            click.echo("\nheadrace init --recipe NAME writes one.", err=True)
        return
    if recipe not in RECIPES:
        raise click.UsageError(f'no recipe "{recipe}" (recipes: {", ".join(RECIPES)})')
    if output.exists() and not force:
        raise click.UsageError(f"{output} exists; --force overwrites it")
    output.write_text(RECIPES[recipe][1], encoding="utf-8")
    click.echo(f"wrote {output}; check it with: headrace validate {output}")


@main.group()
def dlq() -> None:
    """Inspect and replay the dead-letter store (events a sink refused for good)."""


def _state_conn(data_dir: Path) -> Any:
    from headrace.storage import state

    path = data_dir / "state.db"
    if not path.exists():
        raise click.UsageError(f"no state database in {data_dir} (has headrace served there?)")
    conn = state.connect(path)
    state.init_schema(conn)
    return conn


@dlq.command("list")
@data_dir_option
@click.option("--sink", help="Only this sink's dead letters.")
@click.option("--reason", help="Only this reason (e.g. type_mismatch).")
@click.option("--all", "include_replayed", is_flag=True, help="Include those already replayed.")
@click.option("--limit", default=100, show_default=True, help="Most rows to show.")
def dlq_list(
    data_dir: Path, sink: str | None, reason: str | None, include_replayed: bool, limit: int
) -> None:
    """List dead letters, oldest first."""
    from headrace.query.lake import iso
    from headrace.storage.state import list_dead_letters

    conn = _state_conn(data_dir)
    rows = list_dead_letters(
        conn, sink=sink, reason=reason, include_replayed=include_replayed, limit=limit
    )
    if not rows:
        click.echo("no dead letters")
        return
    click.echo(
        f"{'ID':>6}  {'SINK':<12} {'REASON':<18} {'ATTEMPTS':>8}  {'FAILED AT':<27} EVENT / ERROR"
    )
    for row in rows:
        click.echo(
            f"{row.id:>6}  {row.sink:<12} {row.reason:<18} {row.attempts:>8}  "
            f"{iso(row.failed_at_us):<27} {row.event_id} {row.error[:80]}"
        )


@dlq.command("show")
@data_dir_option
@click.argument("dead_letter_id", type=int)
def dlq_show(data_dir: Path, dead_letter_id: int) -> None:
    """Show one dead letter in full, with the original event."""
    import msgspec

    from headrace.query.lake import iso
    from headrace.storage.state import get_dead_letter

    row = get_dead_letter(_state_conn(data_dir), dead_letter_id)
    if row is None:
        raise click.UsageError(f"no dead letter with id {dead_letter_id}")
    info: dict[str, Any] = {
        "id": row.id,
        "sink": row.sink,
        "reason": row.reason,
        "error": row.error,
        "attempts": row.attempts,
        "event_id": row.event_id,
        "stream": row.stream,
        "source": row.source,
        "received_at": iso(row.received_at_us),
        "failed_at": iso(row.failed_at_us),
        "replayed_at": iso(row.replayed_at_us),
        "event": msgspec.json.decode(row.data),
    }
    click.echo(msgspec.json.format(msgspec.json.encode(info), indent=2).decode())


@dlq.command("replay")
@config_option
@data_dir_option
@click.option("--sink", help="Only this sink's dead letters.")
@click.option("--reason", help="Only this reason.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (repeatable).")
def dlq_replay(
    config_path: Path | None, data_dir: Path, sink: str | None, reason: str | None,
    ids: tuple[int, ...],
) -> None:  # fmt: skip
    """Send dead letters back to the sink that refused them (e.g. after fixing its schema)."""
    from headrace.buffer import open_buffer
    from headrace.buffer.records import dead_letter_requests
    from headrace.storage.state import get_dead_letter, list_dead_letters, mark_replayed

    conn = _state_conn(data_dir)
    if ids:
        letters = [
            dl
            for i in ids
            if (dl := get_dead_letter(conn, i)) is not None and dl.replayed_at_us is None
        ]
    else:
        letters, after = [], 0
        while batch := list_dead_letters(
            conn, sink=sink, reason=reason, limit=10_000, after_id=after
        ):
            letters.extend(batch)
            after = batch[-1].id
    if not letters:
        click.echo("nothing to replay")
        return
    open_buffer(_load(config_path).buffer, data_dir).requeue(dead_letter_requests(letters))
    count = len(letters)
    mark_replayed(conn, letters)
    click.echo(f"queued {count} dead letter(s) for delivery")


@main.group()
def keys() -> None:
    """Issue, list and revoke API keys for sources with an ``api_key`` authorizer."""


def _parse_rate(value: str | None) -> float | None:
    if value is None:
        return None
    number = value.strip().removesuffix("/s")
    try:
        rate = float(number)
    except ValueError:
        raise click.BadParameter(
            f'"{value}" is not a rate such as 50/s', param_hint="--rate"
        ) from None
    if rate <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--rate")
    return rate


@keys.command("create")
@config_option
@data_dir_option
@click.option("--source", required=True, help="Source the key may send to.")
@click.option("--name", default="", help="Who the key is for (shown in listings).")
@click.option("--rate", help="Requests a second this key may send, e.g. 50/s (default: no limit).")
def keys_create(
    config_path: Path | None, data_dir: Path, source: str, name: str, rate: str | None
) -> None:
    """Issue a key. It is shown once; only its hash is stored."""
    from headrace.authorizers.api_key import ApiKeyAuth
    from headrace.storage.api_keys import KeyStore

    pipeline = _load(config_path)
    found = pipeline.sources.get(source)
    if found is None:
        raise click.UsageError(
            f'no source named "{source}" (sources: {", ".join(pipeline.sources)})'
        )
    if not any(isinstance(a, ApiKeyAuth) for a in found.auth):
        click.echo(
            f'warning: source "{source}" has no api_key authorizer; the key is not checked yet',
            err=True,
        )
    issued, key = KeyStore(data_dir).create(source, name, _parse_rate(rate))
    click.echo(key)
    click.echo(
        f"key {issued.id} for source {source} ({issued.prefix}…); it will not be shown again",
        err=True,
    )


@keys.command("list")
@data_dir_option
@click.option("--source", help="Only this source's keys.")
def keys_list(data_dir: Path, source: str | None) -> None:
    """List keys (never the keys themselves)."""
    from headrace.query.lake import iso
    from headrace.storage.api_keys import KeyStore

    issued = KeyStore(data_dir).list(source)
    if not issued:
        click.echo("no keys")
        return
    click.echo(
        f"{'ID':>4}  {'SOURCE':<14} {'NAME':<16} {'PREFIX':<11} {'RATE':>7}  {'CREATED':<27} STATE"
    )
    for key in issued:
        state = f"revoked {iso(key.revoked_at_us)}" if key.revoked_at_us else "live"
        rate = f"{key.rate:g}/s" if key.rate else "-"
        click.echo(
            f"{key.id:>4}  {key.source:<14} {key.name:<16} {key.prefix:<11} {rate:>7}  {iso(key.created_at_us):<27} {state}"
        )


@keys.command("revoke")
@data_dir_option
@click.argument("key_id", type=int)
def keys_revoke(data_dir: Path, key_id: int) -> None:
    """Revoke a key; ingest refuses it within seconds."""
    from headrace.storage.api_keys import KeyStore

    if not KeyStore(data_dir).revoke(key_id):
        raise click.UsageError(f"no live key with id {key_id}")
    click.echo(f"key {key_id} revoked")


@main.group()
def badrows() -> None:
    """Inspect and replay refused events and requests (schema, decode and size refusals)."""


def _badrow_store(data_dir: Path) -> Any:
    from headrace.storage.badrows import BadRowStore

    if not (data_dir / "badrows.db").exists():
        raise click.UsageError(f"no bad rows in {data_dir}")
    return BadRowStore(data_dir)


@badrows.command("list")
@data_dir_option
@click.option("--source", help="Only this source's bad rows.")
@click.option("--reason", help="Only this reason (schema_violation, decode_error, size_violation).")
@click.option("--all", "include_replayed", is_flag=True, help="Include those already replayed.")
@click.option("--limit", default=100, show_default=True, help="Most rows to show.")
def badrows_list(
    data_dir: Path, source: str | None, reason: str | None, include_replayed: bool, limit: int
) -> None:
    """List bad rows, oldest first."""
    from headrace.query.lake import iso

    rows = _badrow_store(data_dir).find(
        source=source, reason=reason, include_replayed=include_replayed, limit=limit
    )
    if not rows:
        click.echo("no bad rows")
        return
    click.echo(
        f"{'ID':>6}  {'SOURCE':<14} {'REASON':<17} {'RECEIVED AT':<27} {'BYTES':>7}  WHERE / WHY"
    )
    for row in rows:
        click.echo(
            f"{row.id:>6}  {row.source:<14} {row.reason:<17} {iso(row.received_at_us):<27} "
            f"{row.raw_bytes:>7}  {row.path or '-'} {row.message[:70]}"
        )


@badrows.command("show")
@data_dir_option
@click.argument("row_id", type=int)
def badrows_show(data_dir: Path, row_id: int) -> None:
    """Show one bad row with its raw bytes (as text)."""
    import msgspec

    row = _badrow_store(data_dir).get(row_id)
    if row is None:
        raise click.UsageError(f"no bad row with id {row_id}")
    info = row.as_dict()
    with contextlib.suppress(msgspec.DecodeError, UnicodeDecodeError):  # JSON when it is JSON
        info["raw"] = msgspec.json.decode(row.raw)
    click.echo(msgspec.json.format(msgspec.json.encode(info), indent=2).decode())


@badrows.command("replay")
@config_option
@data_dir_option
@click.option("--source", help="Only this source's bad rows.")
@click.option("--reason", help="Only this reason.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these rows (repeatable).")
def badrows_replay(
    config_path: Path | None, data_dir: Path, source: str | None, reason: str | None,
    ids: tuple[int, ...],
) -> None:  # fmt: skip
    """Check bad rows again with the current pipeline and deliver what now passes.

    Rows whose every event passes are marked replayed; replaying a row again never stores an
    event twice.
    """
    from headrace.ingest.badrows import replay_bad_rows

    pipeline = _load(config_path)
    store = _badrow_store(data_dir)
    if ids:
        rows = [r for i in ids if (r := store.get(i)) is not None and r.replayed_at_us is None]
    else:
        rows, after = [], 0
        while batch := store.find(source=source, reason=reason, after_id=after, limit=10_000):
            rows.extend(batch)
            after = batch[-1].id
    if not rows:
        click.echo("nothing to replay")
        return
    outcome = replay_bad_rows(data_dir, pipeline, rows)
    store.mark_replayed(outcome.rows or [])
    click.echo(
        f"queued {outcome.events} event(s) from {len(rows)} bad row(s); "
        f"{outcome.still_bad} row(s) still fail; {outcome.skipped} skipped (truncated or no such source)"
    )


_DOC_KINDS = {"transforms": "transform", "sinks": "sink", "authorizers": "authorizer",
              "warehouses": "warehouse"}  # fmt: skip


@main.command()
@click.argument(
    "kind",
    type=click.Choice(["sources", *_DOC_KINDS, "pipeline"]),
    default="pipeline",
)
@click.argument("type_name", required=False)
def docs(kind: str, type_name: str | None) -> None:
    """Print the documentation of pipeline-file components and their keys.

    KIND is sources, transforms, sinks, authorizers, warehouses or pipeline; TYPE_NAME picks one
    type (``headrace docs sinks postgres``). Components installed by plugins are listed too.
    """
    from headrace.config import models
    from headrace.config.base import Limits
    from headrace.registry import components

    registry = components()
    found: dict[str, Any]
    if kind in _DOC_KINDS:
        found = {name: c for name, c in registry.components[_DOC_KINDS[kind]].items()}  # type: ignore[index]
    elif kind == "sources":
        found = dict(models.SOURCE_TYPES)
    else:
        found = {"pipeline": models.Pipeline, "buffer": models.LocalBuffer, "limits": Limits}
    names = [type_name] if type_name else sorted(found)
    for name in names:
        entry = found.get(name)
        if entry is None:
            raise click.UsageError(
                f'no {kind[:-1] if kind != "pipeline" else kind} type "{name}" '
                f"(available: {', '.join(sorted(found))})"
            )
        model = getattr(entry, "config", entry)
        origin = getattr(entry, "origin", "headrace")
        suffix = "" if origin == "headrace" else f"   [plugin: {origin}]"
        click.echo(f"{name}: {(model.__doc__ or '').strip()}{suffix}")
        capabilities = sorted(getattr(entry, "capabilities", ()))
        if capabilities:
            click.echo(f"  can: {', '.join(capabilities)}")
        _describe_fields(model, "  ")
        click.echo()


def _describe_fields(model: Any, indent: str) -> None:
    from pydantic import BaseModel

    for field_name, info in model.model_fields.items():
        nested = info.annotation if isinstance(info.annotation, type) else None
        is_model = nested is not None and issubclass(nested, BaseModel)
        default = ""
        if not info.is_required() and not is_model:
            default = f" (default: {info.get_default(call_default_factory=True)!r})"
        click.echo(f"{indent}{info.alias or field_name}{default}")
        for line in (info.description or "").splitlines():
            click.echo(f"{indent}    {line.strip()}")
        if is_model:
            _describe_fields(nested, indent + "    ")


from headrace.loads.cli import load_command, loads_group  # noqa: E402 - commands of their own

main.add_command(loads_group)
main.add_command(load_command)

if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
