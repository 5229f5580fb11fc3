"""Applying a source's ``map:`` to each event at ingest (the mapping-template replacement)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headrace.config.sources import EventMap
from headrace.ingest.visitor import VisitorHasher

VISITOR = "$visitor"


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

    def __init__(self, config: EventMap, data_dir: Path | None = None) -> None:
        self.config = config
        self.select = set(config.select) if config.select is not None else None
        sources = [*config.copy_fields.values(), *config.defaults.values()]
        names = {s.removeprefix("$header.").lower() for s in sources if s.startswith("$header.")}
        # $visitor hashes the address with the User-Agent (ingest.visitor)
        self.visitors = VisitorHasher(data_dir) if VISITOR in sources else None
        if self.visitors is not None:
            names.add("user-agent")
        self.header_names = frozenset(name.encode("latin-1") for name in names)

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
            event[name] = self._metadata(source, meta)
        for name, source in config.defaults.items():
            if event.get(name) is None:
                event[name] = self._metadata(source, meta)
        return event

    def _metadata(self, source: str, meta: RequestMeta) -> Any:
        if source == VISITOR:
            assert self.visitors is not None
            agent = meta.headers.get("user-agent")
            return self.visitors.visitor(meta.client_ip, agent, meta.received_at_us)
        return _metadata(source, meta)


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
