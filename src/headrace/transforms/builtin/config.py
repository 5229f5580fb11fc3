"""The configs of the built-in transforms that need no outside service: ``filter``, ``remap`` and
``dedupe``."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from headrace.config.base import Seconds, TransformConfig

METADATA_FIELDS = ("$event_id", "$stream", "$source", "$received_at", "$received_at_ms")


Condition = dict[str, Any]
_OPERATORS = {"equals", "not_equals", "in", "not_in", "exists", "gt", "gte", "lt", "lte",
              "matches", "contains"}  # fmt: skip


def check_condition(value: Any, where: str = "condition") -> None:
    """Raise ``ValueError`` naming the place if ``value`` is not a condition (see FilterConfig)."""
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{where}: must be a mapping")
    combinators = [k for k in ("all", "any", "not") if k in value]
    if combinators:
        if len(value) != 1:
            raise ValueError(f"{where}: {combinators[0]} must stand alone")
        inner = value[combinators[0]]
        if combinators[0] == "not":
            check_condition(inner, f"{where}.not")
            return
        if not isinstance(inner, list) or not inner:
            raise ValueError(f"{where}.{combinators[0]}: must be a non-empty list")
        for index, item in enumerate(inner):
            check_condition(item, f"{where}.{combinators[0]}[{index}]")
        return
    if not isinstance(value.get("field"), str) or not value["field"]:
        raise ValueError(f"{where}: needs a field (or all/any/not)")
    ops = [k for k in value if k != "field"]
    if len(ops) != 1 or ops[0] not in _OPERATORS:
        raise ValueError(f"{where}: needs exactly one operator of {', '.join(sorted(_OPERATORS))}")
    op = ops[0]
    if op in ("in", "not_in") and not isinstance(value[op], list):
        raise ValueError(f"{where}.{op}: must be a list")
    if op == "matches":
        try:
            re.compile(value[op])
        except (re.error, TypeError) as exc:
            raise ValueError(f"{where}.matches: not a regular expression: {exc}") from exc
    if op == "exists" and not isinstance(value[op], bool):
        raise ValueError(f"{where}.exists: must be true or false")


class FilterConfig(TransformConfig):
    """Keeps the events matching ``condition`` and drops the rest (a drop is not a failure).

    A condition is ``{field: <dotted.path>, <operator>: <value>}`` with one operator of
    ``equals``, ``not_equals``, ``in``, ``not_in``, ``exists``, ``gt``, ``gte``, ``lt``, ``lte``,
    ``matches`` (a regular expression, searched), ``contains``; or ``{all: [...]}``,
    ``{any: [...]}``, ``{not: {...}}``."""

    type: Literal["filter"]
    condition: Condition
    """Events for which this holds are kept."""

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: Condition) -> Condition:
        check_condition(value)
        return value


CastType = Literal[
    "string", "int", "float", "bool", "timestamp_ms", "timestamp_s", "iso8601", "json"
]


class RemapConfig(TransformConfig):
    """Renames, drops, adds and casts fields, and copies delivery metadata into events, in this
    order: ``rename``, ``drop``, ``add``, ``copy``, ``cast``. Dotted names reach into objects.
    An event whose field cannot be cast goes to the dead-letter store."""

    type: Literal["remap"]
    rename: dict[str, str] = Field(default_factory=dict)
    """Old name: new name."""
    drop: list[str] = Field(default_factory=list)
    """Fields removed."""
    add: dict[str, Any] = Field(default_factory=dict)
    """Field: constant value (replaces what is there)."""
    copy_fields: dict[str, str] = Field(default_factory=dict, alias="copy")
    """Field: metadata, one of ``$event_id``, ``$stream``, ``$source``, ``$received_at`` (ISO 8601,
    UTC) or ``$received_at_ms`` (epoch ms); or another field's dotted name."""
    cast: dict[str, CastType] = Field(default_factory=dict)
    """Field: type (``string``, ``int``, ``float``, ``bool``, ``timestamp_ms``, ``timestamp_s``,
    ``iso8601``, ``json`` (text of the value)). Missing and null fields are left alone."""

    @field_validator("copy_fields")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for name, source in value.items():
            if source.startswith("$") and source not in METADATA_FIELDS:
                raise ValueError(
                    f'{name}: "{source}" is not delivery metadata ({", ".join(METADATA_FIELDS)})'
                )
        return value


class DedupeConfig(TransformConfig):
    """Drops an event whose ``fields`` equal those of one already passed within ``window``
    (by receive time). What has been seen is saved with the sink's position, so it holds across
    restarts; an event that was never delivered is never counted as seen."""

    type: Literal["dedupe"]
    fields: list[str] = Field(default_factory=list)
    """Fields (dotted names) whose values identify an event; empty: the event id. An event
    missing one of them (or holding null) has no identity and always passes."""
    window: Seconds = Field(default=3600.0, gt=0)
    """How long an identity is remembered."""
