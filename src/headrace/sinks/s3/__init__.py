"""The ``s3`` sink: Firehose-style objects in S3 or a local directory (see ``sink``)."""

from __future__ import annotations

from headrace.registry import register
from headrace.sinks.base import APPEND, RAW
from headrace.sinks.s3.config import S3Config, validate

register(
    "sink", "s3", config=S3Config, implementation="headrace.sinks.s3.sink:S3Sink",
    capabilities={APPEND, RAW}, validate=validate,
    healthcheck="headrace.sinks.s3.sink:healthcheck",
    embedded="the events it gathers into an object in the state database of the machine that "
    "delivers until the object is uploaded, and the ids it stored there too; store the events "
    "in a postgres sink instead",
)  # fmt: skip
