"""The ``dynamodb`` sink's config: the table and its key."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from headrace.config.base import Model, SinkConfig
from headrace.sinks.s3.config import none_if_empty


class KeyAttribute(Model):
    """One attribute of a DynamoDB table's primary key."""

    name: str = Field(min_length=1)
    """Attribute (event field) name."""
    type: Literal["S", "N", "B"] = "S"
    """String, number or binary."""


class DynamoDBConfig(SinkConfig):
    """Items in a DynamoDB table (or a DynamoDB-compatible server), written with BatchWriteItem.

    Numbers are stored exactly (as Decimal), objects and arrays as maps and lists; an event with
    the same key as a stored item replaces it, so redelivery adds nothing."""

    type: Literal["dynamodb"]
    table: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")
    """Table name."""
    partition_key: KeyAttribute
    """Partition (hash) key, e.g. ``{name: pagePath}``."""
    sort_key: KeyAttribute | None = None
    """Sort (range) key, e.g. ``{name: timestamp, type: N}``."""
    create_table: bool = False
    """Create the table (on-demand billing) if it does not exist."""
    binary_fields: list[str] = Field(default_factory=list)
    """Fields holding base64 text, stored as binary."""
    endpoint_url: str | None = None
    """Endpoint of a DynamoDB-compatible server; none: AWS."""
    region: str | None = None
    """Region; none: the AWS configuration's."""
    max_attempts: int = Field(default=8, ge=1, le=50)
    """Attempts for unprocessed items and throttled calls (with backoff) before the batch is
    retried as a whole."""

    empty_is_none = field_validator("endpoint_url", "region", mode="before")(none_if_empty)

    @model_validator(mode="after")
    def _keys_differ(self) -> DynamoDBConfig:
        if self.sort_key is not None and self.sort_key.name == self.partition_key.name:
            raise ValueError("the sort key must differ from the partition key")
        return self
