"""Typed models of the ``transforms:`` section: ``python``, ``remap``, ``filter``, ``dedupe`` and
``enrich_http``. Each is registered by type in ``headrace.config.models.TRANSFORM_TYPES``.

A transform runs in the delivery process, per sink, between reading the buffer and writing the
sink; so each sink that reads through a transform keeps its own position and its own copy of the
transform's state (a dedupe window, a cache).
"""

from __future__ import annotations

import re
import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from headrace.config.models import Model, Seconds

METADATA_FIELDS = ("$event_id", "$stream", "$source", "$received_at", "$received_at_ms")


class PythonTransform(Model):
    """Your function changes records. With ``contract: firehose`` it is an unchanged Kinesis
    Firehose data-transformation function: called with ``{"records": [{"recordId",
    "approximateArrivalTimestamp", "data": <base64 JSON>}]}`` (and a context object if it takes
    two arguments), it returns ``{"records": [{"recordId", "result": "Ok" | "Dropped" |
    "ProcessingFailed", "data": <base64>}]}``. As in Firehose, an ``Ok`` record's data is opaque
    bytes: one JSON object is the new event, several newline-delimited JSON objects become several
    events, and anything else (CSV, a line of text) goes as it is to sinks that write lines (s3
    ``ndjson``, the lake's ``_raw`` column) and is refused by sinks that need columns. With
    ``contract: record`` it takes one event (a dict) and returns the new dict, or ``None`` to drop
    it. Records that fail, time out or go missing from the answer go to the sink's dead-letter
    store with the reason (or to an s3 sink's ``processing-failed`` output, if it says so)."""

    type: Literal["python"]
    inputs: list[str] = Field(min_length=1)
    """Sources or transforms whose events this transform receives."""
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``module:callable``, importable by the server (e.g. ``clicks.transform:lambda_handler``)."""
    contract: Literal["firehose", "record"] = "firehose"
    """``firehose``: the Kinesis Firehose request/response; ``record``: ``dict -> dict | None``."""
    workers: int = Field(default=2, ge=1, le=64)
    """Worker processes running the function side by side."""
    timeout: Seconds = 60.0
    """Longest one invocation may run; past it the worker is killed and its records fail."""
    max_records: int = Field(default=500, ge=1, le=100_000)
    """Most records handed to one invocation (a delivery batch is split into several)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables set for the function (e.g. ``API_KEY: ${CLICKS_API_KEY}``). The
    workers do not get the server's environment (its tokens, keys and database URLs): only
    ``PATH``, locale and time zone settings, ``HOME``, ``TMPDIR``, the import path, these, and
    those named in ``inherit_env``."""
    inherit_env: list[str] = Field(default_factory=list)
    """Names of the server's environment variables passed on to the function as they are."""
    region: str | None = Field(default=None, min_length=1)
    """``region`` of the Firehose request (functions build AWS clients from it); none: the AWS
    configuration's (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's), else ``local``."""
    delivery_stream_arn: str | None = Field(default=None, min_length=1)
    """``deliveryStreamArn`` of the Firehose request; none:
    ``arn:aws:firehose:<region>:000000000000:deliverystream/<sink id>``."""
    lambda_arn: str | None = Field(default=None, min_length=1)
    """``lambdaArn`` of the records this function fails, in an s3 sink's ``processing-failed``
    output; none: ``arn:aws:lambda:<region>:000000000000:function:<transform id>``."""


Condition = dict[str, Any]
_OPERATORS = {"equals", "not_equals", "in", "not_in", "exists", "gt", "gte", "lt", "lte",
              "matches", "contains"}  # fmt: skip


def check_condition(value: Any, where: str = "condition") -> None:
    """Raise ``ValueError`` naming the place if ``value`` is not a condition (see FilterTransform)."""
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


class FilterTransform(Model):
    """Keeps the events matching ``condition`` and drops the rest (a drop is not a failure).

    A condition is ``{field: <dotted.path>, <operator>: <value>}`` with one operator of
    ``equals``, ``not_equals``, ``in``, ``not_in``, ``exists``, ``gt``, ``gte``, ``lt``, ``lte``,
    ``matches`` (a regular expression, searched), ``contains``; or ``{all: [...]}``,
    ``{any: [...]}``, ``{not: {...}}``."""

    type: Literal["filter"]
    inputs: list[str] = Field(min_length=1)
    """Sources or transforms whose events this transform receives."""
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


class RemapTransform(Model):
    """Renames, drops, adds and casts fields, and copies delivery metadata into events, in this
    order: ``rename``, ``drop``, ``add``, ``copy``, ``cast``. Dotted names reach into objects.
    An event whose field cannot be cast goes to the dead-letter store."""

    type: Literal["remap"]
    inputs: list[str] = Field(min_length=1)
    """Sources or transforms whose events this transform receives."""
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


class DedupeTransform(Model):
    """Drops an event whose ``fields`` equal those of one already passed within ``window``
    (by receive time). What has been seen is saved with the sink's position, so it holds across
    restarts; an event that was never delivered is never counted as seen."""

    type: Literal["dedupe"]
    inputs: list[str] = Field(min_length=1)
    """Sources or transforms whose events this transform receives."""
    fields: list[str] = Field(default_factory=list)
    """Fields (dotted names) whose values identify an event; empty: the event id. An event
    missing one of them (or holding null) has no identity and always passes."""
    window: Seconds = Field(default=3600.0, gt=0)
    """How long an identity is remembered."""


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


_FORMATTER = string.Formatter()


class EnrichHttpTransform(Model):
    """GETs a URL built from each event's fields and merges the JSON answer into the event.

    Values are URL-encoded into the template, so an event can change the path but never the
    host. Answers are cached (LRU with a TTL); identical lookups in one batch are made once."""

    type: Literal["enrich_http"]
    inputs: list[str] = Field(min_length=1)
    """Sources or transforms whose events this transform receives."""
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
    def _cache(self) -> EnrichHttpTransform:
        if self.target is not None and not self.target:
            raise ValueError("target must not be empty")
        return self


TRANSFORM_MODELS: dict[str, type[Model]] = {
    "python": PythonTransform,
    "remap": RemapTransform,
    "filter": FilterTransform,
    "dedupe": DedupeTransform,
    "enrich_http": EnrichHttpTransform,
}
