"""Checking events against a source's JSON Schema, compiled once per source.

``unknown_fields`` acts on the top-level fields the schema's ``properties`` do not name:
``reject`` refuses the event, ``drop`` removes them before storing, ``keep`` leaves them.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from jsonschema.validators import validator_for

from headrace.config.sources import HttpSource

_SIMPLE_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}
_SIMPLE_KEYS = {"type", "properties", "required", "additionalProperties", "$schema", "$id",
                "title", "description"}  # fmt: skip
_SIMPLE_PROPERTY_KEYS = {"type", "enum", "title", "description", "minLength", "maxLength",
                         "minimum", "maximum"}  # fmt: skip


_EXACT_FLOAT_LIMIT = 2**53  # beyond it a float no longer tells integers apart


def _bound(value: Any, integral: bool) -> Any:
    """A usable numeric bound, or ``_NOT_SIMPLE``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _NOT_SIMPLE
    if not -_EXACT_FLOAT_LIMIT < value < _EXACT_FLOAT_LIMIT:
        return _NOT_SIMPLE  # compared as floats, big values would round across the bound
    if integral:
        if isinstance(value, float) and not value.is_integer():
            return _NOT_SIMPLE
        return int(value)
    return value


def _length(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return _NOT_SIMPLE
    return value


_NOT_SIMPLE = object()


def _property_type(spec: Any) -> Any:
    """The msgspec type of a simple property, or ``None`` if it is not simple."""
    if not isinstance(spec, dict) or not set(spec) <= _SIMPLE_PROPERTY_KEYS:
        return None
    if "enum" in spec:
        values = spec["enum"]
        if set(spec) - {"enum", "title", "description"}:
            return None  # enum with other constraints: the full validator decides
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) for v in values)
        ):
            return None
        return Literal[tuple(values)]
    declared = spec.get("type")
    kind = _SIMPLE_TYPES.get(declared) if isinstance(declared, str) else None
    if kind is None:
        return None
    if kind is str:
        meta = {
            "min_length": _length(spec.get("minLength")),
            "max_length": _length(spec.get("maxLength")),
        }
        extra = set(spec) - {"type", "title", "description", "minLength", "maxLength"}
    elif kind in (int, float):
        integral = kind is int
        meta = {
            "ge": _bound(spec.get("minimum"), integral),
            "le": _bound(spec.get("maximum"), integral),
        }
        extra = set(spec) - {"type", "title", "description", "minimum", "maximum"}
    else:
        meta, extra = {}, set(spec) - {"type", "title", "description"}
    if extra or any(v is _NOT_SIMPLE for v in meta.values()):
        return None
    meta = {k: v for k, v in meta.items() if v is not None}
    return Annotated[kind, msgspec.Meta(**meta)] if meta else kind


class FastSchema:
    """A simple schema as a msgspec type: a whole body is checked in C without building values.
    It may refuse what the full validator accepts (``1.0`` as an integer), never the reverse;
    a refused body goes to the full validator, which decides and explains."""

    def __init__(self, struct: type[msgspec.Struct]) -> None:
        self.array = msgspec.json.Decoder(list[struct])  # type: ignore[valid-type]
        self.object = msgspec.json.Decoder(struct)

    @classmethod
    def build(cls, schema: dict[str, Any], unknown_fields: str) -> FastSchema | None:
        """The fast form of ``schema``, or ``None`` when it is not simple enough."""
        try:
            return cls._build(schema, unknown_fields)
        except (TypeError, ValueError):  # anything unexpected: the full validator does it all
            return None

    @classmethod
    def _build(cls, schema: dict[str, Any], unknown_fields: str) -> FastSchema | None:
        properties = schema.get("properties")
        if (schema.get("type") != "object" or not isinstance(properties, dict)
                or not set(schema) <= _SIMPLE_KEYS or unknown_fields == "drop"):  # fmt: skip
            return None
        additional = schema.get("additionalProperties", True)
        if additional not in (True, False):
            return None
        required_list = schema.get("required", [])
        if not isinstance(required_list, list) or not all(
            isinstance(r, str) for r in required_list
        ):
            return None
        required = set(required_list)
        fields: list[tuple[str, Any, Any]] = []
        for name, spec in properties.items():
            kind = _property_type(spec)
            if (
                kind is None
                or not name.isidentifier()
                or name.startswith("_")
                or keyword.iskeyword(name)
            ):
                return None
            if name in required:
                fields.append((name, kind, msgspec.NODEFAULT))
            else:  # optional, but null is not allowed unless the schema says so
                fields.append((name, kind | msgspec.UnsetType, msgspec.UNSET))
        if not required <= set(properties):
            return None
        struct = msgspec.defstruct(
            "SchemaEvent", [(n, t) if d is msgspec.NODEFAULT else (n, t, d) for n, t, d in fields],
            forbid_unknown_fields=additional is False or unknown_fields == "reject",
            kw_only=True,
        )  # fmt: skip
        return cls(struct)


@dataclass(frozen=True)
class Violation:
    """Why one event does not fit: where (a JSON pointer-like path) and what."""

    index: int
    path: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The form answered to senders and kept in bad rows."""
        return {"index": self.index, "path": self.path, "message": self.message}


class SchemaCheck:
    """A source's schema and unknown-field policy."""

    def __init__(self, source: HttpSource) -> None:
        schema = source.json_schema
        assert isinstance(schema, dict), "schema files are read when the pipeline loads"
        self.validator = validator_for(schema)(schema)
        self.unknown_fields = source.unknown_fields
        properties = schema.get("properties")
        self.known = set(properties) if isinstance(properties, dict) else None
        self.fast = FastSchema.build(schema, source.unknown_fields)

    def check(self, index: int, event: dict[str, Any]) -> tuple[dict[str, Any], list[Violation]]:
        """The event as it will be stored (unknown fields dropped, if so configured), and its
        violations (empty when it fits)."""
        violations = []
        if self.known is not None and self.unknown_fields != "keep":
            unknown = [name for name in event if name not in self.known]
            if unknown and self.unknown_fields == "reject":
                violations += [Violation(index, f"/{n}", "unknown field") for n in unknown]
            elif unknown:
                event = {k: v for k, v in event.items() if k in self.known}
        for error in self.validator.iter_errors(event):
            path = "/" + "/".join(str(p) for p in error.absolute_path)
            violations.append(Violation(index, path, error.message[:500]))
        return event, violations
