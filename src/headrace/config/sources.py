"""The ``http`` source: where events are POSTed, who may send them (authorizers, by registered
type), how requests are limited, checked and reshaped, and how ``GET`` reads them back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from headrace.config.base import AuthorizerConfig, Limits, Model, Seconds
from headrace.registry import ComponentUnion, rebuild_on_registration

Authorizer = Annotated[AuthorizerConfig, ComponentUnion("authorizer")]
"""One of the registered authorizer configs, chosen by ``type``."""


class RateLimit(Model):
    """A token bucket per source: ``rate`` requests a second on average, bursts up to ``burst``.
    Excess requests answer 429 with Retry-After. The ingest workers of one server share the
    budget (whichever worker a request reaches); each server of a multi-machine deployment
    enforces the whole rate."""

    rate: float = Field(gt=0)
    """Requests a second, on average."""
    burst: int | None = Field(default=None, ge=1)
    """Requests allowed at once after a quiet spell; defaults to one second's worth."""


class Cors(Model):
    """Cross-origin requests from browsers: preflight answers and response headers."""

    allow_origins: list[str] = Field(min_length=1)
    """Origins allowed to send (``https://shop.example``), or ``"*"`` for any."""
    allow_methods: list[str] = Field(default_factory=lambda: ["POST"])
    """Methods a page may use."""
    allow_headers: list[str] = Field(default_factory=lambda: ["Content-Type", "Authorization"])
    """Request headers a page may send."""
    allow_credentials: bool = False
    """Whether cookies and HTTP auth may be sent (never with ``"*"``)."""
    max_age: Seconds = 600.0
    """How long a browser may cache a preflight answer."""

    @model_validator(mode="after")
    def _no_credentials_for_any_origin(self) -> Cors:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError('allow_credentials cannot go with "*": name the origins')
        return self


class EventMap(Model):
    """A declarative change applied to each event at ingest (after validation), in this order:
    ``select``, ``rename``, ``drop``, ``set``, ``copy``."""

    select: list[str] | None = None
    """Keep only these top-level fields."""
    rename: dict[str, str] = Field(default_factory=dict)
    """Old name: new name."""
    drop: list[str] = Field(default_factory=list)
    """Remove these fields."""
    set: dict[str, Any] = Field(default_factory=dict)
    """Field: constant value."""
    copy_fields: dict[str, str] = Field(default_factory=dict, alias="copy")
    """Field: request metadata, one of ``$stream``, ``$source``, ``$client_ip``,
    ``$principal`` (the API key's name, or what a python authorizer returned), ``$received_at``,
    ``$visitor`` (a daily salted hash of the client address and User-Agent, for unique-visitor
    counts; neither is stored), ``$header.<name>`` or ``$context.<key>`` (from a python
    authorizer)."""

    defaults: dict[str, str] = Field(default_factory=dict)
    """Field: request metadata (as in ``copy``), written only where the event lacks the field or
    it is null, e.g. ``timestamp: $received_at``. Applied last."""

    @field_validator("copy_fields", "defaults")
    @classmethod
    def _known_metadata(cls, value: dict[str, str]) -> dict[str, str]:
        known = ("$stream", "$source", "$client_ip", "$principal", "$received_at", "$visitor")
        for field_name, source in value.items():
            prefixed = any(
                source.startswith(p) and len(source) > len(p) for p in ("$header.", "$context.")
            )
            if source not in known and not prefixed:
                raise ValueError(
                    f'{field_name}: "{source}" is not request metadata '
                    f"({', '.join(known)}, $header.<name> or $context.<key>)"
                )
        return value


class SourceRead(Model):
    """How ``GET`` on a source's path reads it back: always within a bounded time range."""

    default_range: Seconds = Field(default=24 * 3600.0, gt=0)
    """How far back a ``GET`` without ``since`` reads."""
    max_range: Seconds = Field(default=31 * 24 * 3600.0, gt=0)
    """Widest ``since``..``until`` one ``GET`` may ask for (wider answers 400)."""
    sink: str | None = None
    """Sink ``GET`` reads: a lake sink (default: the first lake storing this source), or a
    dynamodb sink with a sort key, read with Query: its partition key is then a required
    parameter (``?pagePath=/pricing``) and its sort key the time (epoch ms for a number key,
    ISO 8601 text for a string key)."""


@rebuild_on_registration
class HttpSource(Model):
    """Events POSTed over HTTP: a JSON object, a JSON array of objects, or NDJSON."""

    # the authorizer union is known once every authorizer has registered
    model_config = ConfigDict(**Model.model_config, defer_build=True)

    type: Literal["http"]
    path: str | None = None
    """Extra URL path the source answers on, e.g. ``/webhooks/split``; it may contain ``{stream}``.
    Every http source is also reachable at ``/v1/streams/<source id>/events``."""
    format: Literal["auto", "json", "ndjson"] = "auto"
    """Body format: ``json`` (an object or an array of objects), ``ndjson``, or ``auto`` (sniffed)."""
    id_field: str | None = None
    """Event field whose value becomes the event id (e.g. ``requestid``); else a UUIDv7 is made."""
    id_header: str | None = None
    """Request header whose value becomes the event id (e.g. ``webhook-id``); the index is appended
    when one request carries several events."""
    success_status: int = Field(default=202, ge=200, le=299)
    """HTTP status answered once the events are durable; some senders accept only exactly 200."""
    success_body: str | None = None
    """Fixed body answered on success instead of the JSON summary (sent as-is)."""
    limits: Limits | None = None
    """Request limits for this source; defaults to the pipeline's ``limits``."""
    json_schema: dict[str, Any] | str | None = Field(default=None, alias="schema")
    """JSON Schema (inline, or a file beside the pipeline file; drafts 4 to 2020-12) each event
    must match."""
    unknown_fields: Literal["reject", "drop", "keep"] = "keep"
    """Top-level fields the schema's ``properties`` do not name: refused, removed, or kept."""
    on_invalid: Literal["reject_request", "keep_valid"] = "reject_request"
    """With a schema, an invalid event refuses the whole request (400), or only itself (the
    valid ones are stored, the answer lists the rest)."""
    map: EventMap | None = None
    """Select, rename, drop, set and copy fields of each event at ingest."""
    rate_limit: RateLimit | None = None
    """Requests a second this source takes; more answer 429 with Retry-After."""
    cors: Cors | None = None
    """Lets web pages on other origins POST to this source."""
    read: SourceRead | None = None
    """Answer ``GET`` on ``path`` with the stored events (filters, time range, pagination), read
    from the first lake sink storing this source; reads need the ``api`` credentials."""
    auth: list[Authorizer] = Field(default_factory=list)
    """Authorizers (``token``, ``hmac``, ``api_key``, ``python``, ``ip_allow``); a request passes
    if any of them does.
    One authorizer may be written without the list."""

    @field_validator("auth", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("path")
    @classmethod
    def _path_shape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith("/"):
            raise ValueError('must start with "/"')
        if value.rstrip("/") in ("/healthz", "/readyz", "/metrics") or value.startswith("/_"):
            raise ValueError(f'"{value}" is reserved by headrace')
        if value.rstrip("/") == "/demo" or value.startswith(
            ("/dashboard/", "/api/dashboard/", "/sdk/", "/demo/")
        ):
            raise ValueError(f'"{value}" is reserved by headrace (the dashboard)')
        for part in value.strip("/").split("/"):
            if "{" in part and part != "{stream}":
                raise ValueError("the only path parameter is a whole segment {stream}")
        return value
