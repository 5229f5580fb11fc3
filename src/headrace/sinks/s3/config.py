"""The ``s3`` sink's config: the store, the object format and schema, keys and buffering."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from headrace.config.base import Bytes, FieldType, Model, Seconds, SinkConfig
from headrace.registry import Problem, ValidationContext

MIB = 1024**2


DEFAULT_ERROR_PREFIX = "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"


def none_if_empty(value: str | None) -> str | None:
    return value or None


class ObjectSchema(Model):
    """The declared columns of Parquet objects."""

    fields: dict[str, FieldType] = Field(default_factory=dict)
    """Field: type (``string``, ``int64``, ``float64``, ``bool``, ``timestamp``, ``json``).
    A value that does not fit its type sends the event to the error output."""
    required: list[str] = Field(default_factory=list)
    """Fields that must be present and not null; an event without one goes to the error output."""
    unknown_fields: Literal["drop", "keep_json", "error"] = "keep_json"
    """Fields not declared: left out (as Firehose does), kept as JSON in an ``_extra`` column,
    or sent to the error output."""
    timestamp_format: Literal["auto", "epoch_s", "epoch_ms", "epoch_us", "iso8601"] = "auto"
    """How ``timestamp`` fields are written in events; ``auto`` takes numbers above 1e11 as ms."""

    @model_validator(mode="after")
    def _required_are_declared(self) -> ObjectSchema:
        missing = [name for name in self.required if name not in self.fields]
        if missing:
            raise ValueError(f"required names fields not declared: {', '.join(missing)}")
        return self


class S3Config(SinkConfig):
    """Objects in S3 (or any S3-compatible store, or a local directory), Firehose-style: Parquet
    with a declared schema or gzip NDJSON, under time-partitioned keys.

    Events are gathered per partition (the rendered prefix) in the state database, committed
    with the buffer position, and uploaded once a partition reaches ``buffer_size`` or
    ``buffer_interval``; an upload interrupted by a crash is made again under the same key. An
    event replayed or resent with the same id (``id_field``) within ``dedupe_window`` is stored
    once."""

    type: Literal["s3"]
    bucket: str | None = None
    """Bucket name (credentials and region from the usual AWS chain unless given)."""
    path: str | None = None
    """A local directory used as the object store instead of a bucket."""
    endpoint_url: str | None = None
    """Endpoint of an S3-compatible store (MinIO, Ceph, moto...); none: AWS."""
    region: str | None = None
    """Region; none: the AWS configuration's."""
    format: Literal["parquet", "ndjson"] = "parquet"
    """``parquet`` (needs ``schema``) or ``ndjson`` (one JSON object a line, gzip-compressed; data
    a Firehose function returned that is not JSON is written as it is)."""
    compression: Literal["zstd", "snappy", "gzip"] | None = None
    """Parquet: ``zstd`` (default) or ``snappy``; NDJSON: ``gzip`` (always)."""
    schema_: ObjectSchema = Field(default_factory=ObjectSchema, alias="schema")
    """Declared columns of Parquet objects."""
    prefix: str = ""
    """Key prefix; may use ``!{timestamp:yyyy-MM-dd}`` (Java date patterns) and
    ``!{partitionKeyFromQuery:field}``. Without a timestamp in it, ``YYYY/MM/DD/HH/`` is appended,
    as Firehose does."""
    error_prefix: str = DEFAULT_ERROR_PREFIX
    """Key prefix of failed records (gzip NDJSON in Firehose's error format); may use
    ``!{firehose:error-output-type}`` (``format-conversion-failed``, ``partitioning-failed``,
    ``processing-failed``),
    timestamps and ``!{firehose:random-string}``, but no fields of the record."""
    time_source: Literal["arrival", "event"] = "arrival"
    """Which time the prefix's timestamps use: when headrace received the event, or ``time_field``."""
    time_field: str | None = None
    """Event field holding the event time (with ``time_source: event``)."""
    time_format: Literal["auto", "epoch_s", "epoch_ms", "epoch_us", "iso8601"] = "auto"
    """How ``time_field`` is written."""
    buffer_size: Bytes = 5 * MIB
    """A partition's object is uploaded once its events reach this size..."""
    buffer_interval: Seconds = Field(default=300.0, gt=0)
    """...or once its oldest event has waited this long."""
    multipart_threshold: Bytes = Field(default=16 * MIB, ge=5 * MIB)
    """Objects at least this large go up in parts (multipart upload)."""
    part_size: Bytes = Field(default=8 * MIB, ge=5 * MIB)
    """Size of each part of a multipart upload."""
    max_attempts: int = Field(default=8, ge=1, le=50)
    """Attempts of one S3 call on throttling, 5xx and connection errors (with backoff)."""
    processing_failed: Literal["dead_letters", "error_prefix"] = "dead_letters"
    """Where records a Firehose-contract ``python`` transform failed go: the dead-letter store,
    or (as Firehose does) ``error_prefix`` as ``processing-failed`` in Firehose's record format."""
    dedupe_window: Seconds = Field(default=7 * 24 * 3600.0, ge=3600.0)
    """How long the ids of stored events are remembered, so a replay or a client's resend
    (``id_field``) adds nothing; at least the buffer's ``retention``."""

    empty_is_none = field_validator("endpoint_url", "region", "bucket", "path", mode="before")(
        none_if_empty
    )

    @model_validator(mode="after")
    def _consistent(self) -> S3Config:
        if (self.bucket is None) == (self.path is None):
            raise ValueError("give exactly one of bucket (an object store) or path (a directory)")
        if self.format == "parquet":
            if not self.schema_.fields:
                raise ValueError("parquet needs schema.fields (the declared columns)")
            if self.compression not in (None, "zstd", "snappy"):
                raise ValueError("parquet compression is zstd or snappy")
        elif self.compression not in (None, "gzip"):
            raise ValueError("ndjson is written gzip-compressed")
        if self.time_source == "event" and not self.time_field:
            raise ValueError("time_source event needs a time_field")
        from headrace.keys import KeyTemplate

        for name, template in (("prefix", self.prefix), ("error_prefix", self.error_prefix)):
            parsed = KeyTemplate(template)  # a ValueError says what is wrong
            if name == "error_prefix" and parsed.fields:
                # failed records are filed without looking into them (a record that lacks the
                # field would fail again, and its batch for ever); Firehose refuses these too
                raise ValueError(
                    f'error_prefix "{template}" cannot use partitionKeyFromQuery or '
                    "partitionKeyFromLambda (failed records are filed by time and error type: "
                    "use !{timestamp:...}, !{firehose:error-output-type}, "
                    "!{firehose:random-string})"
                )
            # every key starts with this: a leading "/", an empty, "." or ".." level would make
            # keys no store accepts (and every upload of the sink fail)
            levels = re.sub(r"!\{[^}]*\}", "x", template).split("/")[:-1]
            if template.startswith("/") or any(level in ("", ".", "..") for level in levels):
                raise ValueError(
                    f'{name} "{template}" must not start with "/" or have an empty, "." or '
                    '".." level'
                )
        return self


def s3_compression(config: S3Config) -> str:
    """The compression actually used."""
    if config.format == "ndjson":
        return "gzip"
    return config.compression or "zstd"


def validate(config: S3Config, context: ValidationContext) -> list[Problem]:
    """The ids of stored events are kept at least as long as the buffer keeps what a replay can
    send again."""
    retention = float(getattr(context.buffer, "kept_for", 0.0))
    setting = (
        "buffer.max_age" if getattr(context.buffer, "type", "") == "nats" else "buffer.retention"
    )
    if config.dedupe_window < retention:
        return [
            (
                ("dedupe_window",),
                f"{config.dedupe_window:g} s is shorter than {setting} ({retention:g} s): "
                "a replay of what the buffer still holds would store events twice",
            )
        ]
    return []
