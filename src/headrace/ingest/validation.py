"""Checking events against a source's JSON Schema, compiled once per source.

``unknown_fields`` acts on the top-level fields the schema's ``properties`` do not name:
``reject`` refuses the event, ``drop`` removes them before storing, ``keep`` leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonschema.validators import validator_for

from headrace.config.models import HttpSource


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
