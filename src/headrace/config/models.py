"""Typed models of the pipeline file.

Every component is a model that rejects unknown keys; each field's docstring is its user
documentation (``headrace docs`` prints them). Components are registered by ``type`` in
``SOURCE_TYPES``, ``TRANSFORM_TYPES`` and ``SINK_TYPES``; to add one, write its model here (or in
its own module) and register it.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

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


class TokenAuth(Model):
    """A header must equal one of the secrets (compared in constant time), e.g.
    ``Authorization: ALLOW=ORDERAPP``. Fails with 401."""

    type: Literal["token"]
    header: str = "Authorization"
    """Header holding the token."""
    secrets: list[NonEmptySecret] = Field(min_length=1)
    """Accepted tokens; list two while rotating."""


class HmacAuth(Model):
    """An HMAC signature over the raw body as sent (before decompression). Presets:
    ``standard-webhooks`` (webhook-id/-timestamp/-signature, ``whsec_`` secrets, a 300 s window
    both ways), ``github`` (X-Hub-Signature-256: sha256=<hex>), ``controlshift``
    (X-ControlShift-Webhook-Signature: sha256:<hex>, a colon, as ControlShift documents it), or
    ``generic`` with the keys below.
    Fails with 401."""

    type: Literal["hmac"]
    preset: Literal["standard-webhooks", "github", "controlshift", "generic"] = "generic"
    """Which provider's scheme; ``generic`` takes header, algorithm, encoding and prefix."""
    secrets: list[NonEmptySecret] = Field(min_length=1)
    """Signing secrets; any may match, so two can be live while rotating."""
    header: str | None = None
    """Header holding the signature (required for ``generic``; overrides a preset's)."""
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    """Hash of the HMAC (``generic``)."""
    encoding: Literal["hex", "base64"] = "hex"
    """How the signature is written (``generic``)."""
    prefix: str | None = None
    """Text before the signature, e.g. ``sha256=`` (``generic``; overrides a preset's)."""
    timestamp_header: str | None = None
    """Header holding a Unix timestamp; the signed content is then ``<timestamp>.<body>`` and
    the timestamp must be within ``tolerance`` of now (``generic``)."""
    tolerance: Seconds = 300.0
    """Largest difference, past or future, between a signed timestamp and now."""

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _secrets_fit_the_preset(self) -> HmacAuth:
        if self.preset == "standard-webhooks":
            from headrace.ingest.auth import standard_webhooks_key

            for secret in self.secrets:
                standard_webhooks_key(secret.get_secret_value())  # ValueError says why
        elif self.preset == "generic" and not self.header:
            raise ValueError("the generic preset needs a header")
        return self


class ApiKeyAuth(Model):
    """A key issued with ``headrace keys create --source <id>``, in a header or a query
    parameter. Keys are stored only as hashes. Fails with 401."""

    type: Literal["api_key"]
    header: str = "X-Api-Key"
    """Header holding the key."""
    query: str | None = None
    """Query parameter that may hold the key instead (for senders that cannot set headers)."""


class PythonAuth(Model):
    """Your function decides (the Lambda-authorizer replacement). ``function`` is
    ``module:callable``, called with a dict (method, path, headers, query, client_ip) and
    returning ``True``/``False`` or ``{"allow": bool, "principal": str, "context": {...}}``;
    the principal and context can be copied into events with ``map``. Fails with 401."""

    type: Literal["python"]
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``module:callable``, importable by the server (e.g. ``myapp.auth:authorize``)."""
    cache_header: str | None = None
    """Header naming who is asking (e.g. ``Authorization``); an allow is cached for that value
    with the same method, path, client address and query. Use it only if no other header
    changes the answer. None: no cache. Denials are never cached."""
    cache_ttl: Seconds = 300.0
    """How long a cached result stands."""


def network_list(value: list[str]) -> list[str]:
    """Check that each entry is a network (``10.0.0.0/8``) or an address."""
    import ipaddress

    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ValueError(f'"{cidr}" is not a network address') from exc
    return value


class IpAllowAuth(Model):
    """The client address must be in one of the networks (for senders with fixed addresses).
    Fails with 403."""

    type: Literal["ip_allow"]
    cidrs: list[str] = Field(min_length=1)
    """Networks such as ``192.0.2.0/24`` or ``2001:db8::/32``."""

    _networks = field_validator("cidrs")(network_list)


Authorizer = Annotated[
    TokenAuth | HmacAuth | ApiKeyAuth | PythonAuth | IpAllowAuth, Field(discriminator="type")
]
AUTH_TYPES = ("token", "hmac", "api_key", "python", "ip_allow")


class RateLimit(Model):
    """A token bucket per source: ``rate`` requests a second on average, bursts up to ``burst``.
    Excess requests answer 429 with Retry-After. Each of N ingest workers enforces 1/N of it."""

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


class HttpSource(Model):
    """Events POSTed over HTTP: a JSON object, a JSON array of objects, or NDJSON."""

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


FieldType = Literal["string", "int64", "float64", "bool", "timestamp", "json"]


class StreamSchema(Model):
    """How the lake stores one stream: its event-time field and declared column types."""

    time_field: str | None = None
    """Field holding the event time; files are partitioned by it. Else by receive time."""
    time_format: Literal["auto", "epoch_s", "epoch_ms", "epoch_us", "iso8601"] = "auto"
    """How ``time_field`` is written; ``auto`` takes numbers above 1e11 as ms, ISO strings as ISO."""
    fields: dict[str, FieldType] = Field(default_factory=dict)
    """Declared column types; an event whose field does not fit goes to the dead-letter store.
    Undeclared fields get a type on first sight (schema evolution) and never get dropped."""


_NO_SCHEMA = StreamSchema()


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


class CompactionSettings(Model):
    """Background merging of small lake files."""

    enabled: bool = True
    """Whether small files are merged in the background."""
    min_files: int = Field(default=8, ge=2)
    """A partition is compacted once it holds this many small files."""
    small_file_bytes: Bytes = 32 * 1024**2
    """Files below this size count as small."""
    interval: Seconds = 30.0
    """How often partitions are checked."""
    grace: Seconds = 60.0
    """How long replaced files stay on disk for readers that listed them before the swap."""


class LakeSink(Model):
    """Parquet files (zstd) under ``<path>/<stream>/dt=YYYY-MM-DD/hour=HH/``, queried with DuckDB."""

    type: Literal["lake"]
    inputs: list[str] = Field(min_length=1)
    """Sources (or transforms) whose events this sink stores."""
    path: str | None = None
    """Directory of the lake; defaults to ``<data dir>/lake``."""
    streams: dict[str, StreamSchema] = Field(default_factory=dict)
    """Per-stream time field and declared columns; ``"*"`` applies to streams not listed."""
    max_columns: int = Field(default=256, ge=1, le=4096)
    """Most columns a stream gets; further new fields are kept in the ``_extra`` JSON column."""
    batch: BatchSettings = BatchSettings()
    """When batches are written."""
    retry: RetrySettings = RetrySettings()
    """How failures are retried."""
    compaction: CompactionSettings = CompactionSettings()
    """Background merging of small files."""

    def schema_for(self, stream: str) -> StreamSchema:
        """The stream's schema settings (``"*"`` when it has none of its own)."""
        return self.streams.get(stream) or self.streams.get("*") or _NO_SCHEMA


PgType = Literal["text", "bigint", "integer", "double precision", "numeric", "boolean",
                 "timestamptz", "jsonb"]  # fmt: skip
PG_NAME_BYTES = 63


def _pg_name(value: str, what: str) -> str:
    if not value or len(value.encode()) > PG_NAME_BYTES:
        raise ValueError(
            f'{what} "{value}" must be 1 to {PG_NAME_BYTES} bytes (PostgreSQL truncates longer names)'
        )
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL")
    return value


class DerivedTime(Model):
    """A timestamptz column computed from an event field."""

    source: str
    """The event field holding the time."""
    unit: Literal["epoch_ms", "epoch_s", "iso8601"] = "epoch_ms"
    """How the field writes it."""


class PostgresExport(Model):
    """How ``headrace export --sink`` writes this table as CSV."""

    columns: dict[str, str] = Field(default_factory=dict)
    """Column: header name, in order (e.g. ``key: User Key``); default: every declared column."""
    time_column: str = "_received_at"
    """Column ``--since``/``--until`` filter on."""
    time_unit: Literal["timestamp", "epoch_ms", "epoch_s"] = "timestamp"
    """How ``time_column`` is stored: a timestamp, or a number of ms or s since the epoch."""


class PostgresSink(Model):
    """Rows in a PostgreSQL table, written in batches with COPY; redelivered events never add rows.

    The table (created if missing) has ``_event_id`` (unique), ``_received_at``, ``_created_at``,
    the declared ``columns`` and, with ``unknown_fields: keep_json``, an ``_extra`` JSONB column.
    Names are always quoted, so any name PostgreSQL allows works."""

    type: Literal["postgres"]
    inputs: list[str] = Field(min_length=1)
    """Sources (or transforms) whose events this sink stores."""
    dsn: SecretStr | None = None
    """libpq connection string or URL (e.g. ``${DATABASE_URL}``); else the PG* environment
    variables. Never logged."""
    schema_name: str = Field(default="public", alias="schema")
    """Schema holding the table."""
    table: str
    """Table name (created if missing)."""
    columns: dict[str, PgType] = Field(default_factory=dict)
    """Event field: column type. Values PostgreSQL refuses for the type go to the dead-letter
    store one by one; the rest of the batch is stored."""
    ddl: str | None = None
    """A SQL file (relative to the pipeline file) that creates the table when it is missing,
    for types and constraints ``columns`` cannot say; its names resolve in ``schema``.
    headrace then adds its own columns (``_event_id``, ``_received_at``, ``_created_at``)."""
    pool_size: int = Field(default=2, ge=1, le=64)
    """Most connections the sink keeps open (writes use one; the health probe another)."""
    connect_timeout: Seconds = 10.0
    """How long to wait for a connection before the write is retried later."""
    derived: dict[str, DerivedTime] = Field(default_factory=dict)
    """timestamptz columns computed from a field, e.g. ``time_at: {source: time, unit: epoch_ms}``."""
    unknown_fields: Literal["keep_json", "evolve", "freeze"] = "keep_json"
    """Fields not in ``columns``: kept in the ``_extra`` JSONB column, added as new columns
    (``evolve``, ALTER TABLE ADD COLUMN), or refused (``freeze``: dead-letter store)."""
    write_mode: Literal["append", "merge"] = "append"
    """``append`` adds rows; ``merge`` keeps one row per ``dedupe_key``."""
    dedupe_key: list[str] = Field(default_factory=list)
    """Columns whose values identify a row (a unique index); required for ``merge``."""
    on_conflict: Literal["nothing", "update"] = "nothing"
    """With ``merge``: a row whose key exists is skipped, or replaces the stored values."""
    export: PostgresExport = PostgresExport()
    """What ``headrace export --sink`` writes."""
    batch: BatchSettings = BatchSettings()
    """When batches are written."""
    retry: RetrySettings = RetrySettings()
    """How failures are retried."""

    @field_validator("schema_name", "table")
    @classmethod
    def _names(cls, value: str) -> str:
        return _pg_name(value, "name")

    @model_validator(mode="after")
    def _consistent(self) -> PostgresSink:
        lowered: dict[str, str] = {}
        for name in [*self.columns, *self.derived]:
            _pg_name(name, "column")
            if name.startswith("_"):
                raise ValueError(f'column "{name}": names starting with "_" are headrace\'s')
            if name.lower() in lowered:
                raise ValueError(
                    f'columns "{lowered[name.lower()]}" and "{name}" differ only in case'
                )
            lowered[name.lower()] = name
        missing = [k for k in self.dedupe_key if k not in self.columns]
        if missing and self.ddl is None:  # with a ddl file, the table's columns are checked
            raise ValueError(f"dedupe_key names columns not in columns: {', '.join(missing)}")
        if self.write_mode == "merge" and not self.dedupe_key:
            raise ValueError("write_mode merge needs a dedupe_key")
        if self.write_mode == "append" and self.dedupe_key:
            # append stores every event once (by event id); a key that makes rows unique is
            # what merge means, and silently merging under "append" would surprise
            raise ValueError("dedupe_key needs write_mode: merge (append keeps every event)")
        if self.write_mode == "append" and self.on_conflict == "update":
            raise ValueError("on_conflict: update needs write_mode: merge")
        return self


class LocalBuffer(Model):
    """The embedded durable buffer: checksummed segment files, fsync'd with group commit."""

    type: Literal["local"] = "local"
    max_bytes: Bytes = 10 * 1024**3
    """Largest the buffer may grow; past it, ingest answers 503 with Retry-After."""
    min_free_bytes: Bytes = 256 * 1024**2
    """Free disk space kept in reserve; below it, ingest answers 503 with Retry-After."""
    segment_bytes: Bytes = 64 * 1024**2
    """A segment file is closed and a new one started past this size."""
    segment_age: Seconds = 300.0
    """...or past this age, so retention can remove old data."""
    retention: Seconds = 24 * 3600.0
    """How long delivered data is kept for ``headrace replay`` (less when the buffer nears
    ``max_bytes``: room for new events comes first)."""


class ApiSettings(Model):
    """Who may read events back and see the dashboard (``/``, ``GET /v1/streams/*/events``,
    ``/v1/badrows``, ``/v1/deadletters``). Listening beyond loopback needs a credential here."""

    read_tokens: list[NonEmptySecret] = Field(default_factory=list)
    """Tokens a reader sends in ``read_header`` (``Bearer <token>`` or the bare token); none:
    reads are open (the server listens on 127.0.0.1 unless told otherwise)."""
    read_header: str = "Authorization"
    """Header holding a read token."""
    users: dict[str, NonEmptySecret] = Field(default_factory=dict)
    """User name: password, for HTTP basic auth on the dashboard and the read API (a browser
    asks for them). A read token also works as the password, with any user name."""


from headrace.config.bulk import BulkExportSource as BulkExportSource  # noqa: E402 - builds on these
from headrace.config.object_sinks import DynamoDBSink, S3Sink  # noqa: E402 - needs Model
from headrace.config.transform_models import TRANSFORM_MODELS  # noqa: E402 - needs Model

SOURCE_TYPES: dict[str, type[Model]] = {"http": HttpSource, "bulk_export": BulkExportSource}
TRANSFORM_TYPES: dict[str, type[Model]] = {**TRANSFORM_MODELS}
SINK_TYPES: dict[str, type[Model]] = {
    "lake": LakeSink,
    "postgres": PostgresSink,
    "s3": S3Sink,
    "dynamodb": DynamoDBSink,
}

Source = Annotated[HttpSource | BulkExportSource, Field(discriminator="type")]
Sink = Annotated[LakeSink | PostgresSink | S3Sink | DynamoDBSink, Field(discriminator="type")]


class Pipeline(Model):
    """A whole pipeline: where events come from, how they are changed, where they go."""

    sources: dict[str, Source]
    """Where events come from, keyed by id."""
    transforms: dict[str, Model] = Field(default_factory=dict)
    """How events are changed on the way, keyed by id."""
    sinks: dict[str, Sink] = Field(default_factory=dict)
    """Where events are delivered, keyed by id."""
    buffer: LocalBuffer = LocalBuffer()
    """Where accepted events wait for delivery."""
    limits: Limits = Limits()
    """Default request limits for http sources."""
    api: ApiSettings = ApiSettings()
    """Who may read events and bad rows back."""

    def http_sources(self) -> dict[str, HttpSource]:
        """The sources whose events are stored (``bulk_export`` sources make load jobs)."""
        return {sid: s for sid, s in self.sources.items() if isinstance(s, HttpSource)}

    def bulk_sources(self) -> dict[str, BulkExportSource]:
        """The ``bulk_export`` sources (see ``headrace.loads``)."""
        return {sid: s for sid, s in self.sources.items() if isinstance(s, BulkExportSource)}

    def limits_for(self, source: HttpSource | BulkExportSource) -> Limits:
        """The limits that apply to ``source``."""
        return source.limits or self.limits

    def read_sink_for(self, source_id: str) -> tuple[str, LakeSink | DynamoDBSink] | None:
        """The sink ``GET`` on the source's path reads: its ``read.sink``, else the first lake."""
        source = self.sources.get(source_id)
        wanted = source.read.sink if isinstance(source, HttpSource) and source.read else None
        if wanted is None:
            return self.lake_for_source(source_id)
        sink = self.sinks.get(wanted)
        return (wanted, sink) if isinstance(sink, LakeSink | DynamoDBSink) else None

    def lake_for_source(self, source_id: str) -> tuple[str, LakeSink] | None:
        """The first lake sink storing ``source_id``'s events, directly or through transforms
        (what GET and export read)."""
        for sink_id in self.sinks_for_source(source_id):
            sink = self.sinks[sink_id]
            if isinstance(sink, LakeSink):
                return sink_id, sink
        return None

    def sinks_for_source(self, source_id: str) -> list[str]:
        """Ids of the sinks that receive events from ``source_id`` (directly or through
        transforms)."""
        from headrace.transforms.graph import sources_of

        return [sid for sid, sink in self.sinks.items() if source_id in sources_of(self, sid)]


DEFAULT_SOURCE_ID = "events"
DEFAULT_SINK_ID = "lake"


def default_pipeline() -> Pipeline:
    """The built-in pipeline used with no config file: any stream, into the local lake."""
    return Pipeline(
        sources={
            DEFAULT_SOURCE_ID: HttpSource(type="http", path="/v1/streams/{stream}/events"),
        },
        sinks={DEFAULT_SINK_ID: LakeSink(type="lake", inputs=[DEFAULT_SOURCE_ID])},
    )
