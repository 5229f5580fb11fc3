"""The ``headrace`` command line: one module per family of commands, gathered here.

serve, validate, init      cli.run
export, replay             cli.data
dlq, badrows               cli.failures
keys                       cli.keys
loads, load                cli.loads
docs                       cli.docs
"""

from __future__ import annotations

import click

from headrace.cli.data import export, replay
from headrace.cli.docs import docs
from headrace.cli.failures import badrows, dlq
from headrace.cli.keys import keys
from headrace.cli.loads import load_command, loads_group
from headrace.cli.run import deliver, ingest, init, serve, validate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="headrace")
def main() -> None:
    """headrace: receive events over HTTP, keep every acknowledged one, deliver them in batches.

    Start with `headrace serve` and POST JSON to
    http://127.0.0.1:8080/v1/streams/<stream>/events; read it back with
    GET on the same URL or `headrace export --stream <stream>`.
    """


for command in (serve, ingest, deliver, validate, init, export, replay, dlq, badrows, keys, loads_group,
                load_command, docs):  # fmt: skip
    main.add_command(command)

__all__ = ["main"]
