"""One http source's request path, built once per source: the stages of ``ingest.stages`` in
the order of the data flow, then the answer.

    body (within max_body_bytes) → authorize → limit → decode → validate → assign ids → map
    → commit → 2xx

The 2xx (``success_status``, with ``success_body`` or ``{"accepted", "ids"[, "rejected"]}``)
is sent only after the commit returned: what it acknowledges is durable. A refusal answers its
status and reason, is counted (``headrace_requests_rejected_total``) and, when its reason is
about the content (``badrows.REASONS``) and the sender passed authorization, is kept as a bad
row with the body as received (decompressed once that worked). A full buffer is 503 with
``Retry-After``; anything unexpected is 500, with nothing stored.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from headrace.authorizers import SourceAuth
from headrace.buffer.base import BufferWriter
from headrace.buffer.orderlog import ORDER_LOG, note_order
from headrace.buffer.records import BufferedRequest
from headrace.config.base import Limits
from headrace.config.sources import HttpSource
from headrace.errors import BufferFull, RequestRejected
from headrace.ids import event_ids, new_base_id
from headrace.ingest.badrows import REASONS, BadRowKeeper
from headrace.ingest.limits import CorsPolicy
from headrace.ingest.mapping import Mapper
from headrace.ingest.stages import (
    AssignIds,
    Authorize,
    Commit,
    Decode,
    Limit,
    MapEvents,
    Validate,
    check_stream,
)
from headrace.ingest.validation import SchemaCheck
from headrace.telemetry import metrics as m
from headrace.telemetry import stageclock
from headrace.telemetry.stageclock import STAGE_CLOCK
from headrace.web.asgi import JSON_HEADERS, Receive, Scope, Send, encode_json, send_body, send_error
from headrace.web.request import read_body, request_headers

log = logging.getLogger("headrace.ingest")

Headers = list[tuple[bytes, bytes]]
NO_HEADERS: Headers = []  # shared, never changed: the extra headers of a source without cors
NO_REJECTIONS: list[dict[str, Any]] = []  # shared, never changed
TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]
PREFLIGHT_HEADERS = frozenset(
    {b"origin", b"access-control-request-method", b"access-control-request-headers"}
)
INTERNAL_ERROR = RequestRejected(500, "internal_error", "the request failed; nothing was stored")
CLOCKED_STAGES = {
    "authorize": "authorize", "limit": "authorize", "decode": "decode", "validate": "validate",
    "assign_ids": "ids", "map": "map", "commit": "frame encode", "reply": "answer",
}  # fmt: skip
"""The attributes ``bench/ingest.py --profile`` clocks (``telemetry/stageclock.py``): the
stage each belongs to."""
if STAGE_CLOCK:  # for the same profile: the request's headers and body, and its base id
    request_headers = stageclock.clocked("receive", request_headers)
    read_body = stageclock.clocked_async("receive", read_body)
    new_base_id = stageclock.clocked("ids", new_base_id)


class SourcePipeline:
    """The request path of one http source (``__call__`` for a POST, ``preflight`` for CORS)."""

    def __init__(
        self,
        source_id: str,
        source: HttpSource,
        limits: Limits,
        *,
        writer: BufferWriter,
        metrics: m.Registry,
        keeper: BadRowKeeper,
        data_dir: Path,
        workers: int = 1,
    ) -> None:
        self.source_id = source_id
        self.limits = limits
        self.metrics = metrics
        self.keeper = keeper
        self.received = m.key("headrace_events_received_total", source=source_id)
        self.accepted = m.key("headrace_events_accepted_total", source=source_id)
        status = str(source.success_status)
        self.succeeded = m.key("headrace_requests_total", source=source_id, status=status)
        self.cors = CorsPolicy(source.cors) if source.cors else None
        auth = SourceAuth(source, source_id, data_dir) if source.auth else None
        schema = SchemaCheck(source) if source.json_schema else None
        mapper = Mapper(source.map, data_dir) if source.map else None
        self.authorize = Authorize(auth, metrics) if auth is not None else None
        self.limit = (
            Limit(source_id, source.rate_limit, workers, data_dir)
            if source.rate_limit or auth
            else None
        )
        self.decode = Decode(source, limits, schema, mapped=mapper is not None)
        self.validate = Validate(source_id, schema, source.on_invalid, keeper) if schema else None
        self.assign_ids = AssignIds(source)
        self.map = MapEvents(source_id, mapper) if mapper is not None else None
        self.commit = Commit(source_id, writer)
        self.header_names = self._header_names(source)
        self.success_status = source.success_status
        body = source.success_body
        self.success_body = body.encode() if body is not None else None
        self.success_headers = TEXT_HEADERS if body is not None else JSON_HEADERS
        if STAGE_CLOCK:  # a benchmark's profile: each stage's CPU
            stageclock.clock_stages(self, CLOCKED_STAGES)

    def _header_names(self, source: HttpSource) -> frozenset[bytes] | None:
        """The request headers the stages read (``None``: all, for a python authorizer)."""
        if self.authorize is not None and self.authorize.reads_all_headers:
            return None
        names = {b"content-encoding", b"content-type", b"content-length", b"origin"}
        if source.id_header:
            names.add(source.id_header.lower().encode("latin-1"))
        if self.authorize is not None:
            names |= self.authorize.header_names
        if self.map is not None:
            names |= self.map.header_names
        return frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, stream: str) -> None:
        """Take one POST through the stages; answer 2xx once the commit returned."""
        cors = NO_HEADERS
        kept = b""  # what a bad row keeps: the body, decompressed once that has worked
        authorized = self.authorize is None  # bad rows only from senders that passed
        try:
            check_stream(stream)
            headers = request_headers(scope, self.header_names)
            if self.cors is not None:
                cors = self.cors.response_headers(headers.get("origin"))
            kept = raw = await read_body(receive, headers, self.limits.max_body_bytes)
            received_at_us = time.time_ns() // 1000
            principal = None
            if self.authorize is not None:
                principal = await self.authorize(scope, headers, raw, received_at_us)
            authorized = True
            if self.limit is not None:
                self.limit(principal)
            kept = body = self.decode.decompress(raw, headers.get("content-encoding"))
            decoded = self.decode(body, headers.get("content-type"))
            self.metrics.add(self.received, decoded.count)
            rejected = NO_REJECTIONS
            if self.validate is not None:
                decoded, rejected = self.validate(decoded, stream, received_at_us)
            base = new_base_id(received_at_us // 1000)
            ids = self.assign_ids(decoded, headers, principal, base)
            if self.map is not None and decoded.events:
                decoded = self.map(decoded, scope, stream, principal, received_at_us, headers)
            if decoded.count:
                await self.commit(decoded, stream, received_at_us, base, ids)
        except RequestRejected as exc:
            self.refused(exc, stream, kept if authorized else None)
            await send_error(send, exc, cors)
            return
        except BufferFull as exc:
            reply = self.buffer_full(exc)
            extra = [(b"retry-after", str(exc.retry_after).encode())]
            await send_body(send, 503, reply, JSON_HEADERS + extra + cors)
            return
        except Exception:
            log.exception("ingest into %s failed unexpectedly; nothing was stored", self.source_id)
            self.count_request(500)
            await send_error(send, INTERNAL_ERROR)
            return
        self.metrics.add(self.accepted, decoded.count)
        self.metrics.add(self.succeeded)
        reply = self.reply(decoded.count, base, ids, rejected)
        if ORDER_LOG and decoded.count:  # a test hook: the 2xx goes out next
            note_order("ack", base.to_bytes(16, "big"))
        await send_body(send, self.success_status, reply, self.success_headers + cors)

    def reply(self, count: int, base: int, ids: list[str] | None, rejected: list[Any]) -> bytes:
        """The body of the 2xx: ``success_body``, or what was accepted and under which ids."""
        if self.success_body is not None:
            return self.success_body
        if ids is None and not rejected and 0 < count <= QUICK_REPLY_MAX:
            return generated_ids_reply(base, count)
        accepted: dict[str, Any] = {
            "accepted": count,
            "ids": ids if ids is not None else event_ids(base, count),
        }
        if rejected:
            accepted["rejected"] = rejected
        return encode_json(accepted)

    def refused(self, exc: RequestRejected, stream: str, kept: bytes | None) -> None:
        """Count a refusal; keep it as a bad row when its reason is about the content and the
        sender passed (``kept``: the body to keep; ``None`` before authorization passed)."""
        self.metrics.add(
            m.key("headrace_requests_rejected_total", source=self.source_id, reason=exc.reason)
        )
        kind = REASONS.get(exc.reason)
        if kind is not None and kept is not None:  # auth, rate and routing refusals are not
            errors: Any = exc.detail.get("errors") or [{}]
            path = str(errors[0].get("path", ""))
            received_at_us = time.time_ns() // 1000
            self.keeper.keep(
                [(self.source_id, stream, kind, path, exc.message, received_at_us, kept)]
            )
        self.count_request(exc.status)

    def buffer_full(self, exc: BufferFull) -> bytes:
        """Count a request the buffer could not take; the body of its 503."""
        self.metrics.add(
            m.key("headrace_requests_rejected_total", source=self.source_id, reason="buffer_full")
        )
        self.count_request(503)
        return encode_json({"error": "buffer_full", "message": str(exc)})

    def count_request(self, status: int) -> None:
        """Count an answer by status (``headrace_requests_total``)."""
        self.metrics.add(
            m.key("headrace_requests_total", source=self.source_id, status=str(status))
        )

    async def preflight(self, scope: Scope, send: Send) -> None:
        """Answer a CORS preflight: 204 with what the source allows, or 403 ``cors_forbidden``."""
        assert self.cors is not None
        headers = request_headers(scope, PREFLIGHT_HEADERS)
        try:
            allowed = self.cors.preflight(
                headers.get("origin"),
                headers.get("access-control-request-method"),
                headers.get("access-control-request-headers"),
            )
        except RequestRejected as exc:
            await send_error(send, exc)
            return
        await send_body(send, 204, b"", allowed)


QUICK_REPLY_MAX = 10_000
"""Up to this many events, the 2xx of generated ids is built from a table of index digits."""
_INDEX_DIGITS = [b"%06x" % index for index in range(QUICK_REPLY_MAX)]


def generated_ids_reply(base: int, count: int) -> bytes:
    """``{"accepted": count, "ids": [...]}`` of ids derived from ``base`` (see ``headrace.ids``),
    as ``encode_json`` writes it, without a string per id: all ids share their first 30
    characters, so the list is one join of the index digits with ``","<prefix>`` between."""
    digits = b"%032x" % base
    prefix = b"%b-%b-%b-%b-%b" % (
        digits[:8],
        digits[8:12],
        digits[12:16],
        digits[16:20],
        digits[20:26],
    )
    joined = (b'","' + prefix).join(_INDEX_DIGITS[:count])
    return b'{"accepted":%d,"ids":["%b%b"]}' % (count, prefix, joined)


class DiscardingWriter:
    """A ``BufferWriter`` that keeps nothing: the ``/_decoded`` ceiling's (``--noop-endpoint``),
    which runs a source's whole request path but the commit, to show what the commit costs."""

    commits = 0
    frames_committed = 0

    def start(self) -> int:
        return 0

    async def commit(self, request: BufferedRequest) -> None:
        return None

    def problem(self) -> str | None:
        return None

    def stored_bytes(self) -> int:
        return 0

    async def stop(self) -> None:
        return None


async def noop(receive: Receive, send: Send) -> None:
    """``POST /_noop`` (``--noop-endpoint``): reads the body and answers like a successful
    ingest, storing nothing: the benchmark's ceiling."""
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send_body(send, 202, b'{"accepted":0,"ids":[]}')
