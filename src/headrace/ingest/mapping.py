"""Applying a source's ``map:`` to each event at ingest (the mapping-template replacement)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headrace.config.models import EventMap


@dataclass(frozen=True)
class RequestMeta:
    """What ``copy`` may take from the request."""

    stream: str
    source: str
    client_ip: str | None
    principal: str | None
    received_at_us: int
    headers: dict[str, str]  # lower-case names
    context: dict[str, Any] = field(default_factory=dict)  # from a python authorizer


class Mapper:
    """One source's map, ready to apply."""

    def __init__(self, config: EventMap) -> None:
        self.config = config
        self.select = set(config.select) if config.select is not None else None
        self.header_names = frozenset(
            source.removeprefix("$header.").lower().encode("latin-1")
            for source in [*config.copy_fields.values(), *config.defaults.values()]
            if source.startswith("$header.")
        )

    def apply(self, event: dict[str, Any], meta: RequestMeta) -> dict[str, Any]:
        """The event as it will be stored."""
        config = self.config
        if self.select is not None:
            event = {k: v for k, v in event.items() if k in self.select}
        else:
            event = dict(event)
        for old, new in config.rename.items():
            if old in event:
                event[new] = event.pop(old)
        for name in config.drop:
            event.pop(name, None)
        event.update(config.set)
        for name, source in config.copy_fields.items():
            event[name] = _metadata(source, meta)
        for name, source in config.defaults.items():
            if event.get(name) is None:
                event[name] = _metadata(source, meta)
        return event


def _metadata(source: str, meta: RequestMeta) -> Any:
    if source.startswith("$header."):
        return meta.headers.get(source[8:].lower())
    if source.startswith("$context."):
        return meta.context.get(source[9:])
    if source == "$received_at":
        moment = datetime.fromtimestamp(meta.received_at_us / 1_000_000, tz=UTC)
        return moment.isoformat().replace("+00:00", "Z")
    return {"$stream": meta.stream, "$source": meta.source, "$client_ip": meta.client_ip,
            "$principal": meta.principal}[source]  # fmt: skip
