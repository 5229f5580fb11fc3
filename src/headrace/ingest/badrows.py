"""Ingest's side of the bad rows: which refusals are kept (``REASONS``), keeping them from a
thread so the event loop never waits on SQLite (``BadRowKeeper``), and replaying them through
the current pipeline. The store itself is ``headrace.storage.badrows``.

Reasons: ``schema_violation``, ``decode_error`` (invalid JSON, bad gzip, not an object, too
deep, numbers out of range), ``size_violation`` (too large, too many events), ``mapping_error``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.storage.badrows import BadRow, BadRowStore

log = logging.getLogger("headrace.ingest")
REASONS = {  # RequestRejected reasons kept as bad rows, by kind
    "invalid_json": "decode_error", "not_an_object": "decode_error", "empty_body": "decode_error",
    "decode_error": "decode_error", "too_deep": "decode_error",
    "number_out_of_range": "decode_error", "unsupported_encoding": "decode_error",
    "body_too_large": "size_violation", "decompressed_too_large": "size_violation",
    "too_many_events": "size_violation", "schema_violation": "schema_violation",
    "mapping_error": "mapping_error",
}  # fmt: skip


class BadRowKeeper:
    """Keeps refusals in a ``BadRowStore`` from a thread: an answer never waits for SQLite."""

    def __init__(self, store: BadRowStore) -> None:
        self.store = store
        self.pending: set[asyncio.Future[None]] = set()

    def keep(self, rows: list[tuple[str, str, str, str, str, int, bytes]]) -> None:
        """Start writing ``rows`` (as ``BadRowStore.add`` takes them); a failure is logged."""
        future = asyncio.get_running_loop().run_in_executor(None, self.store.add, rows)
        self.pending.add(future)
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[None]) -> None:
        self.pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("cannot keep bad rows: %s", future.exception())

    async def drain(self) -> None:
        """Wait until the rows being written are written."""
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)


@dataclass
class ReplayOutcome:
    """What replaying bad rows did."""

    events: int = 0
    rows: list[int] | None = None  # rows every event of which now passes (marked replayed)
    still_bad: int = 0
    skipped: int = 0  # truncated, or their source is gone


def replay_bad_rows(data_dir: Path, pipeline: Any, rows: list[BadRow]) -> ReplayOutcome:
    """Check bad rows again with the current pipeline and queue the events that now pass.

    Event ids derive from the row, so replaying a row twice never stores an event twice.
    """
    import uuid

    import msgspec

    from headrace.buffer import opened_buffer
    from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest
    from headrace.config.sources import HttpSource
    from headrace.errors import RequestRejected
    from headrace.ingest.decode import decompress, parse_events
    from headrace.ingest.mapping import Mapper, RequestMeta
    from headrace.ingest.validation import SchemaCheck

    outcome = ReplayOutcome(rows=[])
    assert outcome.rows is not None
    requests: list[BufferedRequest] = []
    for row in rows:
        source = pipeline.sources.get(row.source)
        if not row.complete or not isinstance(source, HttpSource):
            outcome.skipped += 1
            continue
        limits = pipeline.limits_for(source)
        try:
            body = decompress(row.raw, None, limits)
            decoded = parse_events(body, declared_format=source.format, content_type=None,
                                   limits=limits, need_values=True)  # fmt: skip
        except RequestRejected:
            outcome.still_bad += 1
            continue
        assert decoded.events is not None
        check = SchemaCheck(source) if source.json_schema else None
        passing = []
        for index, event in enumerate(decoded.events):
            stored, problems = check.check(index, event) if check else (event, [])
            if not problems:
                passing.append((index, stored))
        if len(passing) < len(decoded.events):
            outcome.still_bad += 1
        if not passing:
            continue
        if source.map is not None:  # as at ingest; request metadata is not kept, so it is null
            mapper = Mapper(source.map)
            meta = RequestMeta(row.stream, row.source, None, None, row.received_at_us, {})
            passing = [(i, mapper.apply(e, meta)) for i, e in passing]
        ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"headrace:badrow:{row.id}:{row.received_at_us}:{i}"))
               for i, _ in passing]  # fmt: skip
        requests.append(
            BufferedRequest(
                received_at_us=row.received_at_us,
                base_id=bytes(16),
                stream=row.stream,
                source=row.source,
                count=len(passing),
                fmt=FORMAT_ARRAY,
                body=msgspec.json.encode([e for _, e in passing]),
                ids=ids,
                replay=True,
            )
        )
        outcome.events += len(passing)
        if len(passing) == len(decoded.events):
            outcome.rows.append(row.id)
    with opened_buffer(pipeline.buffer, data_dir) as buffer:
        buffer.requeue(requests)
    return outcome
