"""The ``lake`` sink's config: where the lake is, and how each stream is stored."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headrace.config.base import Bytes, FieldType, Model, Seconds, SinkConfig


class StreamSchema(Model):
    """How the lake stores one stream: its event-time field and declared column types."""

    time_field: str | None = None
    """Field holding the event time; files are partitioned by it. Else by receive time."""
    time_format: Literal["auto", "epoch_s", "epoch_ms", "epoch_us", "iso8601"] = "auto"
    """How ``time_field`` is written; ``auto`` takes numbers above 1e11 as ms, ISO strings as ISO."""
    fields: dict[str, FieldType] = Field(default_factory=dict)
    """Declared column types; an event whose field does not fit goes to the dead-letter store.
    Undeclared fields get a type on first sight (schema evolution) and never get dropped."""


_NO_SCHEMA = StreamSchema()


class CompactionSettings(Model):
    """Background merging of small lake files."""

    enabled: bool = True
    """Whether small files are merged in the background."""
    min_files: int = Field(default=8, ge=2)
    """A partition is compacted once it holds this many small files."""
    small_file_bytes: Bytes = 32 * 1024**2
    """Files below this size count as small."""
    interval: Seconds = 30.0
    """How often partitions are checked."""
    grace: Seconds = 60.0
    """How long replaced files stay on disk for readers that listed them before the swap."""


class LakeConfig(SinkConfig):
    """Parquet files (zstd) under ``<path>/<stream>/dt=YYYY-MM-DD/hour=HH/``, queried with DuckDB."""

    type: Literal["lake"]
    path: str | None = None
    """Directory of the lake; defaults to ``<data dir>/lake``."""
    streams: dict[str, StreamSchema] = Field(default_factory=dict)
    """Per-stream time field and declared columns; ``"*"`` applies to streams not listed."""
    max_columns: int = Field(default=256, ge=1, le=4096)
    """Most columns a stream gets; further new fields are kept in the ``_extra`` JSON column."""
    compaction: CompactionSettings = CompactionSettings()
    """Background merging of small files."""

    def schema_for(self, stream: str) -> StreamSchema:
        """The stream's schema settings (``"*"`` when it has none of its own)."""
        return self.streams.get(stream) or self.streams.get("*") or _NO_SCHEMA
