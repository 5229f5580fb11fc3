"""What the commands share: the --config and --data-dir options, loading a pipeline file, times
on the command line, progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from headrace.config.models import Pipeline, default_pipeline
from headrace.errors import ConfigError

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


def load_or_exit(config_path: Path | None) -> Pipeline:
    """The pipeline file (or the default pipeline); its problems printed, exit status 2."""
    if config_path is None:
        return default_pipeline()
    from headrace.config.load import load_pipeline

    try:
        return load_pipeline(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        raise SystemExit(2) from exc


def parse_time(name: str, value: str | None) -> int | None:
    """An option's time (ISO 8601 or epoch s/ms) in µs; a bad one is a usage error."""
    from headrace.query.lake import QueryError, parse_time_param

    if value is None:
        return None
    try:
        return parse_time_param(name, value)
    except QueryError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc


@contextlib.contextmanager
def progress(description: str, total: int | None, enabled: bool) -> Iterator[Any]:
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


def state_conn(data_dir: Path) -> Any:
    from headrace.storage import state

    path = data_dir / "state.db"
    if not path.exists():
        raise click.UsageError(f"no state database in {data_dir} (has headrace served there?)")
    conn = state.connect(path)
    state.init_schema(conn)
    return conn


@contextlib.contextmanager
def buffer_errors() -> Iterator[None]:
    """A buffer that cannot be reached (a NATS server down, a stream set up wrongly) as a
    one-line error and exit status 1, not a traceback."""
    from headrace.errors import BufferUnavailable

    try:
        yield
    except BufferUnavailable as exc:
        raise click.ClickException(f"the buffer is unavailable: {exc}") from exc
