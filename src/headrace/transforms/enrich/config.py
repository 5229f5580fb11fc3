"""The ``enrich_http`` transform's config: the URL per event, what to merge, timeouts, the cache
and the circuit breaker."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from headrace.config.base import Model, Seconds, TransformConfig


class CircuitBreaker(Model):
    """Stops calling a service that is down for a while, so records fail fast instead of waiting.
    Only evidence of an outage opens it: many distinct keys failing, a large share of those
    requested."""

    failures: int = Field(default=10, ge=1)
    """Distinct keys (URLs the template makes, e.g. one per ``mysfitId``) whose lookups got no
    answer (connection errors, timeouts, 429 or 5xx, after their retries) within ``window`` that
    open the circuit. A 4xx is an answer about its key and never counts; one key failing however
    often counts once."""
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    """Share of the distinct keys requested within ``window`` whose latest lookup failed, also
    needed to open it: a service that answers most keys stays closed whatever a few keys do."""
    window: Seconds = Field(default=30.0, gt=0)
    """How far back lookups count towards ``failures`` and ``failure_ratio``."""
    reset_after: Seconds = 30.0
    """How long the circuit stays open; then one trial lookup is let through, of a key that has
    not failed on its own where the batch has one. Any answer (a 4xx too) closes the circuit; no
    answer opens it for ``reset_after`` again."""


class EnrichConfig(TransformConfig):
    """GETs a URL built from each event's fields and merges the JSON answer into the event.

    Values are URL-encoded into the template, so an event can change the path but never the
    host. Answers are cached (LRU with a TTL); identical lookups in one batch are made once."""

    type: Literal["enrich_http"]
    url: str
    """URL template, e.g. ``${SERVICE}/mysfits/{mysfitId}``; ``{field}`` (dotted names allowed)
    takes the event's value, percent-encoded (``/`` too). An empty value, ``.`` or ``..`` fails
    the event's lookup, so no event can reach another path of the service."""
    target: str | None = None
    """Field the answer is stored under; none: its keys are merged into the event (the event's
    own fields win)."""
    select: list[str] = Field(default_factory=list)
    """Keys of the answer to keep; empty: all."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent with each request (e.g. an API key from ``${ENV}``)."""
    timeout: Seconds = Field(default=2.0, gt=0)
    """Longest one request may take, answer included (checked as the answer arrives, so a
    server sending it a byte at a time is cut off within about one more ``timeout``)."""
    max_response_bytes: int = Field(default=1024 * 1024, ge=1)
    """Largest answer accepted (after decompression); a larger one fails the lookup."""
    retries: int = Field(default=2, ge=0, le=10)
    """Further attempts after a timeout, connection error, 429 or 5xx, so a lookup takes at most
    ``(retries + 1) * timeout`` plus the backoff."""
    backoff: Seconds = 0.05
    """First wait between attempts (doubles each time)."""
    concurrency: int = Field(default=16, ge=1, le=512)
    """Most requests in flight at once."""
    max_url_length: int = Field(default=8192, ge=16, le=65_536)
    """Longest URL (after filling in the event's values) that is requested; an event whose URL
    would be longer fails its lookup (``on_failure``)."""
    cache_size: int = Field(default=10_000, ge=0)
    """Answers kept (least recently used go first); 0: no cache."""
    cache_ttl: Seconds = 300.0
    """How long a cached answer is used."""
    failure_ttl: Seconds = 10.0
    """How long a key's failed lookup is remembered: its events meanwhile fail with the same
    error without a request (a stream of one bad id asks once); 0: not remembered. A failure is
    never cached as an answer, and the outage's failures are forgotten when the circuit closes."""
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    """When to stop calling a service that is down for a while."""
    on_failure: Literal["keep", "drop", "dead_letter"] = "dead_letter"
    """What happens to an event whose lookup fails (an error status, a timeout, an open circuit,
    a missing field): it goes on unchanged, is dropped, or goes to the dead-letter store. The
    error names the key, why it failed and, with the circuit open, when it closes."""

    @field_validator("url")
    @classmethod
    def _template(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        try:
            parts = list(_FORMATTER.parse(value))
        except ValueError as exc:
            raise ValueError(f"not a URL template: {exc}") from exc
        for literal, name, spec, conversion in parts:
            del literal
            if name is not None and (not name or spec or conversion):
                raise ValueError("placeholders are {field} or {dotted.field}, nothing more")
        host_part = value.split("://", 1)[1].split("/", 1)[0]
        if "{" in host_part:
            raise ValueError("the host cannot come from an event; put fields in the path")
        return value

    @model_validator(mode="after")
    def _cache(self) -> EnrichConfig:
        if self.target is not None and not self.target:
            raise ValueError("target must not be empty")
        return self


_FORMATTER = string.Formatter()
