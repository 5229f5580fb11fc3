"""Reading stored events back over HTTP (with the read credentials, ``web.access``).

    GET /v1/streams/{stream}/events   a page of the stream from the lake sink storing its
                                      source, else the PostgreSQL sink receiving it (newest
                                      first, cursor pagination); a stream never stored in the
                                      lake is 404 ``unknown_stream``
    GET <source path>                 a source with ``read:``: its read sink (a lake, or a
                                      dynamodb table) over a bounded time range

Filters, pagination and their refusals are ``headrace.query``'s; the reads run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headrace.config.models import Pipeline
from headrace.errors import RequestRejected
from headrace.ingest.routes import Route, path_is_stream_api
from headrace.sinks.lake.config import LakeConfig
from headrace.web.access import ReadAccess, require_read
from headrace.web.asgi import Scope, Send, send_error, send_json
from headrace.web.request import query_params

if TYPE_CHECKING:
    from headrace.query.dynamodb import DynamoReader
    from headrace.sinks.dynamodb.config import DynamoDBConfig

log = logging.getLogger("headrace.ingest")
NOT_QUERYABLE = RequestRejected(404, "not_queryable", "no lake or postgres sink stores this stream")


class EventReads:
    """The read API of one ingest worker."""

    def __init__(self, pipeline: Pipeline, data_dir: Path, access: ReadAccess) -> None:
        self.pipeline = pipeline
        self.data_dir = data_dir
        self.access = access
        self._dynamo_readers: dict[str, DynamoReader] = {}

    @staticmethod
    def readable(route: Route, path: str) -> bool:
        """Whether ``GET path`` reads events: always under ``/v1/streams/``, and on a source's
        own path when it has ``read:``."""
        return path_is_stream_api(path) or route.source.read is not None

    async def __call__(self, scope: Scope, send: Send, route: Route, stream: str) -> None:
        """Answer a read of ``stream`` (guarded by the read credentials)."""
        if await require_read(self.access, scope, send):
            await self._query(scope, send, route, stream)

    async def _query(self, scope: Scope, send: Send, route: Route, stream: str) -> None:
        from headrace.query.lake import QueryError
        from headrace.query.targets import read_sink_for, stream_sink_for
        from headrace.sinks.dynamodb.config import DynamoDBConfig
        from headrace.sinks.postgres.config import PostgresConfig

        # the source's own path reads its read.sink; the stream API reads the lake (or the
        # PostgreSQL table) that stores the source
        bounded = route.source.read is not None and not path_is_stream_api(scope["path"])
        found: tuple[str, Any] | None = (
            read_sink_for(self.pipeline, route.source_id)
            if bounded
            else stream_sink_for(self.pipeline, route.source_id)
        )
        if found is None:
            await send_error(send, NOT_QUERYABLE)
            return
        sink_id, sink = found
        params = query_params(scope, keep_blank_values=True)
        try:
            if bounded:
                from headrace.query.source_read import bounded_params

                assert route.source.read is not None
                params = bounded_params(params, route.source.read)
            if isinstance(sink, DynamoDBConfig):
                result = await self._read_dynamodb(scope, send, sink_id, sink, stream, params)
                if result is None:
                    return
            elif isinstance(sink, PostgresConfig):
                from headrace.query.pg_table import query_table_events

                result = await asyncio.to_thread(query_table_events, sink_id, sink, stream, params)
            else:
                result = await asyncio.to_thread(
                    self._read_lake, sink_id, sink, stream, params, bounded
                )
        except QueryError as exc:
            await send_error(send, RequestRejected(exc.status, exc.reason, str(exc)))
            return
        await send_json(send, result)

    async def _read_dynamodb(
        self, scope: Scope, send: Send, sink_id: str, sink: DynamoDBConfig, stream: str,
        params: list[tuple[str, str]],
    ) -> dict[str, Any] | None:  # fmt: skip
        """A page from the table, or ``None`` once 503 ``read_unavailable`` is answered."""
        from headrace.query.dynamodb import ReadUnavailable

        try:
            reader = self._dynamo_reader(sink_id, sink)
            result: dict[str, Any] = await asyncio.to_thread(reader.query, stream, params)
        except ReadUnavailable as exc:
            log.warning("GET %s: %s", scope["path"], exc)
            await send_error(send, RequestRejected(503, "read_unavailable", str(exc)))
            return None
        return result

    def _read_lake(
        self, sink_id: str, sink: LakeConfig, stream: str, params: list[tuple[str, str]],
        bounded: bool,
    ) -> dict[str, Any]:  # fmt: skip
        """A page of the stream's events; a stream the lake has never stored (and the pipeline
        does not name) is a 404 ``unknown_stream``, not an empty page. A source's own path
        names its stream, so a bounded read never needs the check."""
        from headrace.query.lake import query_events
        from headrace.query.streams import require_known

        if not bounded:
            require_known(self.pipeline, self.data_dir, sink_id, sink, stream)
        return query_events(self.data_dir, sink_id, sink, stream, params)

    def _dynamo_reader(self, sink_id: str, sink: DynamoDBConfig) -> DynamoReader:
        """The reader of a dynamodb sink, made once per worker (it holds a boto3 client)."""
        from headrace.query.dynamodb import DynamoReader

        reader = self._dynamo_readers.get(sink_id)
        if reader is None:
            reader = self._dynamo_readers[sink_id] = DynamoReader(sink)
        return reader
