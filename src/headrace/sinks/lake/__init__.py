"""The ``lake`` sink: Parquet files in a local directory, the embedded default (see ``sink``)."""

from __future__ import annotations

from headrace.registry import register
from headrace.sinks.base import APPEND, RAW, READ
from headrace.sinks.lake.config import LakeConfig

register(
    "sink", "lake", config=LakeConfig, implementation="headrace.sinks.lake.sink:LakeSink",
    capabilities={APPEND, RAW, READ}, healthcheck="headrace.sinks.lake.sink:healthcheck",
    embedded="its Parquet files and their catalog on the disk of the machine that writes them; "
    "store the events in a postgres sink instead (GET, export and the dashboard read it)",
)  # fmt: skip
