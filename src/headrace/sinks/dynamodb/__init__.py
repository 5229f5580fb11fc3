"""The ``dynamodb`` sink: one item per event, written with BatchWriteItem (see ``sink``)."""

from __future__ import annotations

from headrace.registry import register
from headrace.sinks.base import APPEND, MERGE, READ
from headrace.sinks.dynamodb.config import DynamoDBConfig

register(
    "sink", "dynamodb", config=DynamoDBConfig,
    implementation="headrace.sinks.dynamodb.sink:DynamoDBSink",
    capabilities={APPEND, MERGE, READ}, healthcheck="headrace.sinks.dynamodb.sink:healthcheck",
)  # fmt: skip
