"""The ``postgres`` sink: rows in a PostgreSQL table, written with COPY (see ``sink``)."""

from __future__ import annotations

from headrace.registry import register
from headrace.sinks.base import APPEND, MERGE
from headrace.sinks.postgres.config import PostgresConfig, resolve, validate

register(
    "sink", "postgres", config=PostgresConfig,
    implementation="headrace.sinks.postgres.sink:PostgresSink",
    capabilities={APPEND, MERGE}, validate=validate, resolve=resolve,
    healthcheck="headrace.sinks.postgres.sink:healthcheck",
)  # fmt: skip
