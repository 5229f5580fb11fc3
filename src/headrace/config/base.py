"""The building blocks of every config model: the strict ``Model``, durations and sizes, and the
base classes of components (sinks, transforms, authorizers, warehouses).

A component's own model derives from its base class here and lives beside its implementation
(``headrace/sinks/postgres/config.py``...); this module and the rest of ``headrace.config`` never
import a component. Field docstrings are the user documentation (``headrace docs``).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from headrace.retry import RetryPolicy

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$", re.IGNORECASE)


_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "tib": 1024**4,
}


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f'"{value}" is not a duration (examples: 500ms, 10s, 5m, 24h, 7d)')
        return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    return value


def _parse_size(value: Any) -> Any:
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f'"{value}" is not a size (examples: 512KiB, 10MiB, 2GiB)')
        exact = Decimal(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
        return int(exact.to_integral_value(ROUND_HALF_UP))
    return value


Seconds = Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)]
"""A duration: a number of seconds or a string such as ``500ms``, ``10s``, ``5m``, ``24h``."""


Bytes = Annotated[int, BeforeValidator(_parse_size), Field(ge=0)]
"""A size: a number of bytes or a string such as ``512KiB``, ``10MiB``, ``2GiB``."""


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True, frozen=True, populate_by_name=True
    )


class Limits(Model):
    """What one HTTP request may carry; larger or deeper requests are refused with a 4xx."""

    max_body_bytes: Bytes = 10 * 1024**2
    """Largest request body as sent (compressed or not); larger answers 413."""
    max_decompressed_bytes: Bytes = 64 * 1024**2
    """Largest body after gzip/deflate decompression; larger answers 413 (gzip bombs stop here)."""
    max_events: int = Field(default=10_000, ge=1, le=1_000_000)
    """Most events one request may carry; more answers 413."""
    max_depth: int = Field(default=32, ge=2, le=256)
    """Deepest nesting of arrays and objects in an event; deeper answers 400."""


NonEmptySecret = Annotated[SecretStr, Field(min_length=1)]


def network_list(value: list[str]) -> list[str]:
    """Check that each entry is a network (``10.0.0.0/8``) or an address."""
    import ipaddress

    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ValueError(f'"{cidr}" is not a network address') from exc
    return value


FieldType = Literal["string", "int64", "float64", "bool", "timestamp", "json"]


class BatchSettings(Model):
    """When a delivery batch is handed to a sink: whichever limit is reached first."""

    max_events: int = Field(default=10_000, ge=1)
    """Most events in one batch."""
    max_bytes: Bytes = 8 * 1024**2
    """Most buffered bytes in one batch."""
    max_age: Seconds = 1.0
    """Longest an event waits in a partly filled batch."""


class RetrySettings(Model):
    """How transient sink failures are retried: exponential backoff with full jitter."""

    initial_backoff: Seconds = 0.2
    """First wait after a failure."""
    max_backoff: Seconds = 30.0
    """Longest wait between two attempts."""
    max_attempts: int = Field(default=0, ge=0)
    """Attempts before a batch goes to the dead-letter store; 0 retries until it succeeds."""

    def policy(self) -> RetryPolicy:
        """These settings as the retry policy delivery follows."""
        return RetryPolicy(
            initial=self.initial_backoff,
            maximum=self.max_backoff,
            attempts=self.max_attempts or None,
        )


WriteMode = Literal["append", "merge", "replace"]


class SinkConfig(Model):
    """What every sink's config has; a sink type's model derives from it."""

    type: str
    inputs: list[str] = Field(min_length=1)
    """Sources or transforms whose events this sink stores."""
    batch: BatchSettings = BatchSettings()
    """When batches are taken from the buffer."""
    retry: RetrySettings = RetrySettings()
    """How failures are retried."""
    write_mode: WriteMode | None = None
    """How events are written: ``append``, ``merge`` (a later event with the same key replaces
    the stored one) or ``replace``; the sink must be able to (none: its own way)."""


class TransformConfig(Model):
    """What every transform's config has."""

    type: str
    inputs: list[str] = Field(min_length=1)
    """Sources or transforms whose events this transform receives."""


class AuthorizerConfig(Model):
    """What every authorizer's config has."""

    type: str


class WarehouseConfig(Model):
    """What every warehouse's config has."""

    type: str


PG_NAME_BYTES = 63


def pg_identifier(value: str, what: str) -> str:
    if not value or len(value.encode()) > PG_NAME_BYTES:
        raise ValueError(
            f'{what} "{value}" must be 1 to {PG_NAME_BYTES} bytes (PostgreSQL truncates longer names)'
        )
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL")
    return value
