"""Reading back and sending again: ``export`` (CSV from the lake or PostgreSQL) and ``replay``
(a time range from the buffer)."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TextIO

import click

from headrace.cli.common import (
    buffer_errors,
    config_option,
    data_dir_option,
    load_or_exit,
    parse_time,
    progress,
)
from headrace.config.models import Pipeline
from headrace.config.sources import HttpSource
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.postgres.config import PostgresConfig


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
            raise click.UsageError(f'no lake or postgres sink stores the stream "{stream}"')
    return found


@click.command()
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
    From PostgreSQL: --sink NAME of a postgres sink (or --stream S when no lake stores it and a
    postgres sink receives it); --where takes any column, --since/--until filter the sink's
    export.time_column, and export.columns gives the header names.
    """
    from headrace.query.lake import LakeQuery, count_events, export_csv

    pipeline = load_or_exit(config_path)
    chosen = pipeline.sinks.get(sink) if sink else None
    if chosen is None and stream is not None:  # no lake stores it: the table receiving it
        from headrace.query.targets import stream_sink_for

        found = stream_sink_for(pipeline, _source_of_stream(pipeline, stream))
        chosen = found[1] if found is not None else None
    if isinstance(chosen, PostgresConfig):
        _export_postgres(chosen, since, until, where, output, spreadsheet_safe)
        return
    sink_id, sink_config = _lake_sink(pipeline, stream, sink)
    assert stream is not None  # _lake_sink refuses an export without one
    filters = _where_pairs(where)
    query = LakeQuery(
        sink_id,
        stream,
        parse_time("--since", since),
        parse_time("--until", until),
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
        with progress(f"exporting {stream}", total, show) as advance:
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
        sink, since_us=parse_time("--since", since), until_us=parse_time("--until", until),
        where=_where_pairs(where), safe=safe,
    )  # fmt: skip
    try:
        with contextlib.ExitStack() as stack:
            export = stack.enter_context(selection)
            out = sys.stdout.buffer if output is None else stack.enter_context(open(output, "wb"))
            total = export.count() if show else None  # the bar's end, only where it shows
            with progress(f"exporting {sink.table}", total, show) as advance:
                rows = export.write_csv(out, advance if show else None)
            out.flush()
    except QueryError as exc:
        raise click.UsageError(str(exc)) from exc
    if output is not None or show:
        click.echo(
            f"wrote {rows} row(s) to {output or 'standard output'} in {time.monotonic() - started:.1f}s",
            err=True,
        )


@click.command()
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
    from headrace.buffer import opened_buffer

    pipeline = load_or_exit(config_path)
    source_id = _source_of_stream(pipeline, stream)
    consumers = pipeline.sinks_for_source(source_id)
    for name in sinks:
        if name not in consumers:
            raise click.UsageError(
                f'sink "{name}" does not receive the stream (sinks: {", ".join(consumers)})'
            )
    since_us, until_us = parse_time("--since", since), parse_time("--until", until)
    assert since_us is not None and until_us is not None
    if until_us <= since_us:
        raise click.BadParameter("must be after --since", param_hint="--until")
    with (
        progress(f"queueing {stream}", None, sys.stderr.isatty()) as advance,
        opened_buffer(pipeline.buffer, data_dir) as buffer,
        buffer_errors(),
    ):
        count = buffer.replay(stream, since_us, until_us, list(sinks) or None, advance)
    click.echo(
        f"queued {count} event(s) of {stream} for delivery to {', '.join(sinks) or 'all its sinks'}"
    )
