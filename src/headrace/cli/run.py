"""Running and checking a pipeline: ``serve`` (or its roles, ``ingest`` and ``deliver``),
``validate``, ``init``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from headrace.cli.common import config_option, data_dir_option, load_or_exit
from headrace.config.models import Pipeline
from headrace.errors import ConfigError, HeadraceError
from headrace.server.roles import DELIVER, INGEST

_log_options = [
    click.option(
        "--log-level",
        default="info",
        show_default=True,
        type=click.Choice(["debug", "info", "warning", "error"]),
    ),
    click.option(
        "--log-format",
        default="text",
        show_default=True,
        type=click.Choice(["text", "json"]),
        help="json writes one object per line, for log collectors.",
    ),
]
_http_options = [
    click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
    click.option("--port", "-p", default=8080, show_default=True, help="Port to listen on."),
    click.option(
        "--workers", "-w", default=0, help="Ingest worker processes (default: one per core)."
    ),
    click.option(
        "--noop-endpoint",
        is_flag=True,
        hidden=True,
        help="Expose POST /_noop (reads the body, stores nothing): the benchmark's ceiling.",
    ),
]


def _with(options: list[Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Apply a list of click options to a command."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def _run(pipeline: Pipeline, log_level: str, log_format: str, **settings: Any) -> None:
    """Run the supervisor with ``settings`` (``ServeOptions``) until SIGTERM or Ctrl-C."""
    from headrace.server.supervisor import ServeOptions
    from headrace.server.supervisor import serve as run_server
    from headrace.telemetry.logs import setup_logging

    log_cfg = {"level": log_level, "fmt": log_format}
    setup_logging(**log_cfg)
    settings["data_dir"] = settings["data_dir"].resolve()
    try:
        raise SystemExit(run_server(pipeline, ServeOptions(log_cfg=log_cfg, **settings)))
    except (HeadraceError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from exc


@click.command()
@config_option
@data_dir_option
@_with(_http_options)
@_with(_log_options)
def serve(config_path: Path | None, log_level: str, log_format: str, **settings: Any) -> None:
    """Run the HTTP ingest workers and the delivery process until SIGTERM or Ctrl-C.

    A 2xx answer means the events are in the buffer (fsync'd segment files, or with a nats
    buffer acknowledged by JetStream) and will be delivered at least once, whatever happens to
    the process afterwards.
    """
    _run(load_or_exit(config_path), log_level, log_format, **settings)


@click.command()
@config_option
@data_dir_option
@_with(_http_options)
@_with(_log_options)
def ingest(config_path: Path | None, log_level: str, log_format: str, **settings: Any) -> None:
    """Run only the HTTP ingest workers (and bulk loads), for machines behind a load balancer.

    Delivery runs elsewhere (`headrace deliver` on the same pipeline file): with a nats buffer
    on any machines, with the local buffer on this machine and data directory. /readyz answers
    for this machine's buffer connection only.
    """
    _run(load_or_exit(config_path), log_level, log_format, roles=frozenset({INGEST}), **settings)


@click.command()
@config_option
@data_dir_option
@click.option(
    "--sink", "sinks", multiple=True,
    help="Deliver only to this sink (repeatable; default: every sink).",
)  # fmt: skip
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True,
    help="Address of /metrics, /healthz and /readyz.",
)  # fmt: skip
@click.option(
    "--metrics-port", default=8081, show_default=True, type=click.IntRange(0, 65535),
    help="Port of /metrics, /healthz and /readyz (0: any free port, shown in the log).",
)  # fmt: skip
@_with(_log_options)
def deliver(
    config_path: Path | None, data_dir: Path, sinks: tuple[str, ...], metrics_host: str,
    metrics_port: int, log_level: str, log_format: str,
) -> None:  # fmt: skip
    """Run only delivery: read the buffer and write batches to the sinks until SIGTERM.

    With a nats buffer, any number of machines may deliver to the same sink: they share its
    consumer, each batch goes to one of them, and nothing is acknowledged before its sink
    committed it. The order of events across machines is not kept.
    """
    pipeline = load_or_exit(config_path)
    unknown = [name for name in sinks if name not in pipeline.sinks]
    if unknown:
        raise click.BadParameter(
            f"no sink {', '.join(unknown)} (sinks: {', '.join(pipeline.sinks)})",
            param_hint="--sink",
        )
    _run(
        pipeline, log_level, log_format, data_dir=data_dir, roles=frozenset({DELIVER}),
        sinks=sinks, metrics_address=(metrics_host, metrics_port),
    )  # fmt: skip


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
