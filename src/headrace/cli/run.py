"""Running and checking a pipeline: ``serve``, ``validate``, ``init``."""

from __future__ import annotations

from pathlib import Path

import click

from headrace.cli.common import config_option, data_dir_option, load_or_exit
from headrace.errors import ConfigError, HeadraceError


@click.command()
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

    pipeline = load_or_exit(config_path)
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


@click.command()
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


@click.command()
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
