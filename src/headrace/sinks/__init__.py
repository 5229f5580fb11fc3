"""Sinks, registered by type; each module is imported only when a pipeline uses it."""

from __future__ import annotations

from pathlib import Path

from headrace.config.models import LakeSink as LakeSinkConfig
from headrace.config.models import Model
from headrace.config.models import PostgresSink as PostgresConfig
from headrace.config.object_sinks import DynamoDBSink as DynamoDBConfig
from headrace.config.object_sinks import S3Sink as S3Config
from headrace.sinks.base import APPEND, MERGE, REPLACE, Sink

__all__ = ["APPEND", "MERGE", "REPLACE", "Sink", "build_sink"]


def build_sink(sink_id: str, config: Model, data_dir: Path) -> Sink:
    """The sink object for one configured sink (not yet opened)."""
    if isinstance(config, LakeSinkConfig):
        from headrace.sinks.lake import LakeSink

        return LakeSink(sink_id, config, data_dir)
    if isinstance(config, PostgresConfig):
        from headrace.sinks.postgres import PostgresSink

        return PostgresSink(sink_id, config, data_dir)
    if isinstance(config, S3Config):
        from headrace.sinks.s3 import S3Sink

        return S3Sink(sink_id, config, data_dir)
    if isinstance(config, DynamoDBConfig):
        from headrace.sinks.dynamodb import DynamoDBSink

        return DynamoDBSink(sink_id, config, data_dir)
    raise ValueError(f"no sink implementation for {type(config).__name__}")
