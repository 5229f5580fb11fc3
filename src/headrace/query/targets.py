"""Which sink a read is answered from: ``GET`` on a source, the stream API, ``headrace export``."""

from __future__ import annotations

from headrace.config.models import Pipeline
from headrace.config.sources import HttpSource
from headrace.sinks.dynamodb.config import DynamoDBConfig
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.postgres.config import PostgresConfig


def lake_for_source(pipeline: Pipeline, source_id: str) -> tuple[str, LakeConfig] | None:
    """The first lake sink storing ``source_id``'s events, directly or through transforms
    (what the stream API, export and the dashboard read)."""
    for sink_id in pipeline.sinks_for_source(source_id):
        sink = pipeline.sinks[sink_id]
        if isinstance(sink, LakeConfig):
            return sink_id, sink
    return None


def stream_sink_for(
    pipeline: Pipeline, source_id: str
) -> tuple[str, LakeConfig | PostgresConfig] | None:
    """The sink the stream API reads ``source_id``'s events from: the first lake storing them,
    else the first PostgreSQL sink receiving them (the shared store of a pipeline whose buffer
    is ``nats``, where a lake cannot be used)."""
    found: tuple[str, LakeConfig | PostgresConfig] | None = lake_for_source(pipeline, source_id)
    if found is not None:
        return found
    for sink_id in pipeline.sinks_for_source(source_id):
        sink = pipeline.sinks[sink_id]
        if isinstance(sink, PostgresConfig):
            return sink_id, sink
    return None


def read_sink_for(
    pipeline: Pipeline, source_id: str
) -> tuple[str, LakeConfig | DynamoDBConfig] | None:
    """The sink ``GET`` on the source's path reads: its ``read.sink``, else the first lake."""
    source = pipeline.sources.get(source_id)
    wanted = source.read.sink if isinstance(source, HttpSource) and source.read else None
    if wanted is None:
        return lake_for_source(pipeline, source_id)
    sink = pipeline.sinks.get(wanted)
    return (wanted, sink) if isinstance(sink, LakeConfig | DynamoDBConfig) else None


__all__ = ["lake_for_source", "read_sink_for", "stream_sink_for"]
