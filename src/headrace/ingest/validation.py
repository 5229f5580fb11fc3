"""Checking events against a source's JSON Schema, compiled once per source.

``unknown_fields`` acts on the top-level fields the schema's ``properties`` do not name:
``reject`` refuses the event, ``drop`` removes them before storing, ``keep`` leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from jsonschema.validators import validator_for

from headrace.config.models import HttpSource

_SIMPLE_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}
_SIMPLE_KEYS = {"type", "properties", "required", "additionalProperties", "$schema", "$id",
                "title", "description"}  # fmt: skip
_SIMPLE_PROPERTY_KEYS = {"type", "enum", "title", "description", "minLength", "maxLength",
                         "minimum", "maximum"}  # fmt: skip


def _property_type(spec: Any) -> Any:
    """The msgspec type of a simple property, or ``None`` if it is not simple."""
    if not isinstance(spec, dict) or not set(spec) <= _SIMPLE_PROPERTY_KEYS:
        return None
    if "enum" in spec:
        values = spec["enum"]
        if "type" in spec or not values or not all(isinstance(v, str) for v in values):
            return None
        return Literal[tuple(values)]
    kind = _SIMPLE_TYPES.get(spec.get("type"))  # type: ignore[arg-type]
    if kind is None:
        return None
    meta = {}
    if kind is str:
        meta = {"min_length": spec.get("minLength"), "max_length": spec.get("maxLength")}
    elif kind in (int, float):
        meta = {"ge": spec.get("minimum"), "le": spec.get("maximum")}
    elif set(spec) - {"type", "title", "description"}:
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
        properties = schema.get("properties")
        if (schema.get("type") != "object" or not isinstance(properties, dict)
                or not set(schema) <= _SIMPLE_KEYS or unknown_fields == "drop"):  # fmt: skip
            return None
        additional = schema.get("additionalProperties", True)
        if additional not in (True, False):
            return None
        required = set(schema.get("required", []))
        fields: list[tuple[str, Any, Any]] = []
        for name, spec in properties.items():
            kind = _property_type(spec)
            if kind is None or not name.isidentifier():
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
