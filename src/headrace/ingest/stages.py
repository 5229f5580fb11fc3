"""The stages of an http source's request path, in the order of the data flow:

    authorize → limit → decode → validate → assign ids → map → commit

Each stage is built once per source from its config and called once per request by
``headrace.ingest.pipeline.SourcePipeline``, which strings them together. A stage refuses a
request by raising ``RequestRejected`` (the commit: ``BufferFull``). A source with no
authorizers, rate limit, schema or map has no such stage at all, so it costs nothing there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from headrace.authorizers import Principal, RequestFacts, SourceAuth
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest
from headrace.config.base import NAME_PATTERN, Limits
from headrace.config.sources import HttpSource, RateLimit
from headrace.errors import RequestRejected
from headrace.ids import event_ids
from headrace.ingest.badrows import BadRowKeeper
from headrace.ingest.decode import Decoded, decompress, parse_events
from headrace.ingest.limits import TokenBucket
from headrace.ingest.mapping import Mapper, RequestMeta
from headrace.ingest.ratebudget import SharedBucket, SharedBuckets
from headrace.ingest.validation import SchemaCheck, Violation
from headrace.telemetry import metrics as m
from headrace.web.asgi import Scope, encode_json
from headrace.web.request import client_address

if TYPE_CHECKING:
    from headrace.buffer.base import BufferWriter

log = logging.getLogger("headrace.ingest")
Bucket = SharedBucket | TokenBucket

MAX_LISTED = 50
"""Violations an answer or a refusal lists, at most."""


def check_stream(stream: str) -> None:
    """Refuse (400 ``invalid_stream``) a stream name the buffer and the sinks cannot take."""
    if not NAME_PATTERN.match(stream):
        raise RequestRejected(
            400,
            "invalid_stream",
            "stream names use letters, digits, '_', '.' and '-' (at most 128)",
        )


class Authorize:
    """**authorize**: the source's authorizers, over the body exactly as it arrived (a signature
    covers the raw bytes, before decompression). One that may block (a ``python`` function)
    runs off the event loop within its deadline; a timeout is 503 ``authorizer_timeout``,
    counted in ``headrace_authorizer_timeouts_total``."""

    def __init__(self, auth: SourceAuth, metrics: m.Registry | None = None) -> None:
        self.auth = auth
        self.header_names = auth.header_names
        self.reads_all_headers = auth.wants_all_headers
        self.metrics = metrics
        self.timeouts = m.key("headrace_authorizer_timeouts_total", source=auth.source_id)

    async def __call__(
        self, scope: Scope, headers: dict[str, str], raw: bytes, received_at_us: int
    ) -> Principal | None:
        """Who sent the request (``None``: no authorizer can tell); raises 401, 403 or 503."""
        facts = RequestFacts(headers, raw, client_address(scope), scope.get("query_string", b""))
        now = received_at_us / 1_000_000
        if not self.auth.blocks:
            return self.auth.verify(facts, now, "POST", scope["path"])
        try:
            return await self.auth.verify_off_loop(facts, now, "POST", scope["path"])
        except RequestRejected as exc:
            if exc.reason == "authorizer_timeout" and self.metrics is not None:
                self.metrics.add(self.timeouts)
            raise


class Limit:
    """**limit**: the rate of the sender's API key, then the source's. The budgets are shared
    by every ingest worker of the server (``ratebudget``), so a limit holds whichever worker a
    connection reaches; keys and sources each have their own. It runs after authorize:
    refused requests must not use up a sender's rate."""

    def __init__(
        self, source_id: str, rate: RateLimit | None, workers: int, data_dir: Path | None = None
    ) -> None:
        self.workers = workers
        self.shared = SharedBuckets.at(data_dir / "run") if data_dir is not None else None
        self.source = self._bucket(f"source:{source_id}", rate) if rate is not None else None
        self.keys: dict[int, tuple[float, Bucket]] = {}  # API key id: its rate, its bucket

    def __call__(self, principal: Principal | None) -> None:
        """Take a token from each bucket that applies; raises 429 ``rate_limited``."""
        key = principal.api_key if principal is not None else None
        if key is not None and key.rate:
            self._key_bucket(key.id, key.rate).take()
        if self.source is not None:
            self.source.take()

    def _key_bucket(self, key_id: int, rate: float) -> Bucket:
        known = self.keys.get(key_id)
        if known is not None and known[0] == rate:
            return known[1]
        bucket = self._bucket(f"key:{key_id}", RateLimit(rate=rate))  # new, or its rate changed
        self.keys[key_id] = (rate, bucket)
        return bucket

    def _bucket(self, name: str, limit: RateLimit) -> Bucket:
        """The shared bucket ``name``; this worker's share of it if the table is full."""
        burst = limit.burst if limit.burst is not None else max(1.0, limit.rate)
        shared = self.shared.bucket(name, limit.rate, burst) if self.shared else None
        if shared is None:
            if self.shared is not None:
                log.warning("the shared rate-limit table is full: %s is limited per worker", name)
            return TokenBucket.for_worker(limit, self.workers)
        return shared


class Decode:
    """**decode**: the body decompressed (gzip and deflate recognised by their bytes too), then
    its events checked against the source's format and limits. Values are built only when a
    later stage needs them: with a simple schema and no ``id_field`` or map, the schema's fast
    form checks the events while skimming them."""

    def __init__(
        self, source: HttpSource, limits: Limits, schema: SchemaCheck | None, mapped: bool
    ) -> None:
        needs_values = source.id_field is not None or mapped
        self.skimmer = schema.fast if schema is not None and not needs_values else None
        self.need_values = needs_values or (schema is not None and self.skimmer is None)
        self.format = source.format
        self.limits = limits

    def decompress(self, raw: bytes, content_encoding: str | None) -> bytes:
        """The body as sent, decompressed within ``max_decompressed_bytes``."""
        return decompress(raw, content_encoding, self.limits)

    def __call__(self, body: bytes, content_type: str | None) -> Decoded:
        """The events of ``body``, or ``RequestRejected`` saying why there are none."""
        return parse_events(
            body,
            declared_format=self.format,
            content_type=content_type,
            limits=self.limits,
            need_values=self.need_values,
            skimmer=self.skimmer,
        )


class Validate:
    """**validate**: each event against the source's JSON Schema (unknown fields as it says).
    With ``on_invalid: reject_request`` one invalid event refuses the request (400
    ``schema_violation``; the pipeline keeps the body as one bad row); with ``keep_valid`` the
    valid events go on, each invalid one is kept as a bad row and listed in the answer."""

    def __init__(
        self, source_id: str, schema: SchemaCheck, on_invalid: str, keeper: BadRowKeeper
    ) -> None:
        self.source_id = source_id
        self.schema = schema
        self.reject_request = on_invalid == "reject_request"
        self.keeper = keeper

    def __call__(
        self, decoded: Decoded, stream: str, received_at_us: int
    ) -> tuple[Decoded, list[dict[str, Any]]]:
        """The events that go on, and the violations to list in the answer."""
        if decoded.events is None:  # skimmed: the schema's fast form passed every event
            return decoded, []
        kept: list[dict[str, Any]] = []
        violations: list[Violation] = []
        invalid: dict[int, list[Violation]] = {}
        changed = False
        for index, event in enumerate(decoded.events):
            stored, problems = self.schema.check(index, event)
            if problems:
                invalid[index] = problems
                violations += problems
            else:
                kept.append(stored)
                changed |= stored is not event
        listed = [v.as_dict() for v in violations[:MAX_LISTED]]
        if invalid and self.reject_request:
            raise RequestRejected(
                400, "schema_violation",
                f"{len(invalid)} of {decoded.count} event(s) do not match the schema",
                errors=listed,
            )  # fmt: skip
        if invalid:
            self.keeper.keep([
                (self.source_id, stream, "schema_violation", problems[0].path,
                 "; ".join(f"{p.path}: {p.message}" for p in problems)[:2000], received_at_us,
                 encode_json(decoded.events[index]))
                for index, problems in invalid.items()
            ])  # fmt: skip
        if invalid or changed:
            decoded = Decoded(FORMAT_ARRAY, len(kept), encode_json(kept), kept)
        return decoded, listed


class AssignIds:
    """**assign ids**: the ids a source names, else ``None`` (ids then derive from the request's
    base id). ``id_header`` gives one id per request (``<value>:<index>`` for several events);
    a signed delivery's id header counts only when the signature covering it was checked.
    ``id_field`` names a field of each event as sent, before any map; an event without a usable
    value gets a generated id."""

    def __init__(self, source: HttpSource) -> None:
        self.id_header = source.id_header
        self.id_field = source.id_field

    def __call__(
        self, decoded: Decoded, headers: dict[str, str], principal: Principal | None, base: int
    ) -> list[str] | None:
        """The explicit ids of the events of ``decoded``, if the source has any."""
        id_header = self.id_header or (principal.delivery_id_header if principal else None)
        if id_header:
            value = headers.get(id_header.lower())
            if value:
                count = decoded.count
                return [value] if count == 1 else [f"{value}:{i}" for i in range(count)]
        if self.id_field:
            events = decoded.events or []
            generated: list[str] | None = None
            ids = []
            for index, event in enumerate(events):
                value = event.get(self.id_field)
                if value is None or isinstance(value, dict | list):
                    generated = generated or event_ids(base, len(events))
                    ids.append(generated[index])
                else:
                    ids.append(str(value))
            return ids
        return None


class MapEvents:
    """**map**: the source's ``map:`` applied to each event, with what it may copy from the
    request (its headers, address, principal and time); a map that cannot apply is 400
    ``mapping_error``."""

    def __init__(self, source_id: str, mapper: Mapper) -> None:
        self.source_id = source_id
        self.mapper = mapper
        self.header_names = mapper.header_names

    def __call__(
        self,
        decoded: Decoded,
        scope: Scope,
        stream: str,
        principal: Principal | None,
        received_at_us: int,
        headers: dict[str, str],
    ) -> Decoded:
        """The events as they will be stored."""
        assert decoded.events is not None
        meta = RequestMeta(
            stream, self.source_id, client_address(scope),
            principal.name if principal else None, received_at_us, headers,
            principal.context if principal else {},
        )  # fmt: skip
        try:
            mapped = [self.mapper.apply(event, meta) for event in decoded.events]
            body = encode_json(mapped)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise RequestRejected(
                400, "mapping_error", f"the map cannot be applied: {exc}"
            ) from exc
        return Decoded(FORMAT_ARRAY, len(mapped), body, mapped)


class Commit:
    """**commit**: the request as the buffer keeps it (its body, the base of its ids, its
    stream and source), committed to this worker's buffer writer. The returned awaitable is
    done once the request is on disk (group commit: many requests share one fsync); the 2xx
    waits for it. Raises ``BufferFull`` when the buffer cannot take the request."""

    def __init__(self, source_id: str, writer: BufferWriter) -> None:
        self.source_id = source_id
        self.writer = writer

    def __call__(
        self, decoded: Decoded, stream: str, received_at_us: int, base: int, ids: list[str] | None
    ) -> Awaitable[None]:
        """Hand the request to the writer; await the result for its durability."""
        request = BufferedRequest(
            received_at_us,
            base.to_bytes(16, "big"),
            stream,
            self.source_id,
            decoded.count,
            decoded.fmt,
            decoded.body,
            ids,
        )
        return self.writer.commit(request)
