"""``python -m headrace.cli``: the same command line as ``headrace``."""

from headrace.cli import main

main(prog_name="headrace")
