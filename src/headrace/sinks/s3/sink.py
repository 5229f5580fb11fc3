"""The ``s3`` sink: Firehose-style objects in S3, an S3-compatible store, or a local directory.

Events are gathered per partition in the state database and committed in the same transaction
as the buffer position, so nothing the sink has taken is lost and nothing is taken twice::

    s3_objects(sink, pkey, kind, stream, object_key, created_us, bytes, rows)
    s3_chunks(id, sink, pkey, payload)     -- NDJSON, or for Parquet an Arrow IPC stream (lz4)

``pkey`` is the kind (``data`` or ``error``), the stream and the rendered prefix. The object's key
is fixed when its partition opens; once the partition reaches ``buffer_size`` (NDJSON bytes, or
Arrow's in-memory size) or ``buffer_interval`` it is built (Parquet or gzip NDJSON), uploaded, and
its rows deleted. An upload interrupted by a crash is made again under the same key, replacing
the partial attempt. The ids of what was gathered are kept beside it (``sinks.stored_ids``), so an
event replayed or resent with the same id is not gathered again. Events are typed against the declared schema as they are gathered; those
whose values do not fit go, in Firehose's error format, to the error prefix
(``format-conversion-failed``), those without a partition key to ``partitioning-failed``, and
(with ``processing_failed: error_prefix``) records a Firehose function failed to
``processing-failed``, with its ``lambdaArn``. NDJSON objects take what a Firehose function
returned that is not JSON (``Event.raw``) as it is, one record a line.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import logging
import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec

from headrace.errors import TransientSinkError
from headrace.keys import (
    DEFAULT_TIME_PREFIX,
    ERROR_FORMAT,
    ERROR_PARTITIONING,
    ERROR_PROCESSING,
    KeyTemplate,
    PartitionKeyMissing,
    lookup,
    object_name,
)
from headrace.retry import RetryPolicy
from headrace.sinks.base import APPEND, RAW
from headrace.sinks.parquet import parquet_bytes, table_from_records
from headrace.sinks.s3.config import S3Config, s3_compression
from headrace.sinks.s3.objectstore import DirectoryStore, ObjectStore, S3Store
from headrace.storage.lake_catalog import parse_time_us
from headrace.storage.state import Checkpoint, connect, init_schema
from headrace.storage.stored_ids import STORED_IDS_SCHEMA, already_stored, forget_ids, record_ids
from headrace.types import Event, FailedRecord, WriteResult

log = logging.getLogger("headrace.sinks.s3")

S3_SCHEMA = """
CREATE TABLE IF NOT EXISTS s3_objects (
    sink TEXT NOT NULL, pkey TEXT NOT NULL, kind TEXT NOT NULL, stream TEXT NOT NULL,
    object_key TEXT NOT NULL, created_us INTEGER NOT NULL,
    bytes INTEGER NOT NULL, rows INTEGER NOT NULL, PRIMARY KEY (sink, pkey)
);
CREATE TABLE IF NOT EXISTS s3_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, pkey TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS s3_chunks_by_key ON s3_chunks (sink, pkey, id);
"""
_json = msgspec.json.Encoder()
UPLOAD_RETRY = RetryPolicy(initial=1.0, maximum=60.0, jitter="half")
"""The waits of the background uploads after the store failed (botocore retries each call too)."""
_SEP = "\x1f"


def error_record(
    event_id: str,
    received_us: int,
    data: Any,
    code: str,
    message: str,
    *,
    raw: bytes | None = None,
    attempts: int = 1,
    lambda_arn: str | None = None,
) -> dict[str, Any]:
    """A failed record in the shape Firehose writes to its error prefix."""
    record = {
        "attemptsMade": attempts,
        "arrivalTimestamp": received_us // 1000,
        "errorCode": code,
        "errorMessage": message,
        "attemptEndingTimestamp": time.time_ns() // 1_000_000,
        "rawData": base64.b64encode(raw if raw is not None else _json.encode(data)).decode(),
        "eventId": event_id,
    }
    if lambda_arn is not None:
        record["lambdaArn"] = lambda_arn
    return record


def _line(event: Event) -> bytes:
    """An event as one NDJSON record: its JSON, or the bytes a function returned as they are."""
    return _json.encode(event.data) if event.raw is None else event.raw_line()


class S3Sink:
    """See the module docstring."""

    commits_checkpoint = True

    def __init__(self, sink_id: str, config: S3Config, data_dir: Path) -> None:
        self.id = sink_id
        self.config = config
        # lines take any bytes; Parquet needs the declared columns
        self.capabilities = frozenset({APPEND, RAW} if config.format == "ndjson" else {APPEND})
        # the runtime hands such a sink a batch whose records all failed in the transforms too
        self.keeps_processing_failures = config.processing_failed == "error_prefix"
        self.state_path = data_dir / "state.db"
        self.prefix = KeyTemplate(config.prefix, default_time=DEFAULT_TIME_PREFIX)
        self.error_prefix = KeyTemplate(config.error_prefix)
        self.compression = s3_compression(config)
        self.extension = "parquet" if config.format == "parquet" else "json.gz"
        self.store: ObjectStore | None = None
        self._conn: sqlite3.Connection | None = None
        self._maint_conn: sqlite3.Connection | None = None
        self._flush_lock = threading.Lock()
        self._error: str | None = None
        self._last_warning = 0.0
        self._last_forget = 0.0
        self._failed_uploads = 0
        self._retry_at = 0.0  # monotonic time of the next upload after a failure
        self.uploaded_objects = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Connect to the store, check it, and create the spool tables."""
        config = self.config
        if config.bucket is not None:
            self.store = S3Store(
                config.bucket,
                endpoint_url=config.endpoint_url,
                region=config.region,
                max_attempts=config.max_attempts,
                multipart_threshold=config.multipart_threshold,
                part_size=config.part_size,
            )
        else:
            assert config.path is not None
            self.store = DirectoryStore(Path(config.path))
        self.store.check()
        self._conn = connect(self.state_path)
        init_schema(self._conn, [S3_SCHEMA, STORED_IDS_SCHEMA])

    def close(self) -> None:
        """Upload what is gathered (best effort: what fails stays for the next start)."""
        # a store that just failed is not tried again here: stopping must not wait out its
        # retries, and the events are safe in the spool for the next start
        if self._conn is not None and self.store is not None and self._error is None:
            try:
                self.flush(self._conn, force=True)
            except Exception as exc:
                log.warning("s3 %s: uploads left for the next start: %s", self.id, exc)
        for conn in (self._conn, self._maint_conn):
            if conn is not None:
                conn.close()
        self._conn = self._maint_conn = None

    def health(self) -> str | None:
        """Why the last upload failed, or ``None``."""
        return self._error

    def maintain(self) -> None:
        """Upload partitions that have waited ``buffer_interval``."""
        if self._maint_conn is None:
            self._maint_conn = connect(self.state_path)
        if time.monotonic() - self._last_forget >= 60:
            self._last_forget = time.monotonic()
            window_us = int(self.config.dedupe_window * 1_000_000)
            forget_ids(self._maint_conn, self.id, time.time_ns() // 1000 - window_us)
        now = time.monotonic()
        if now < self._retry_at:  # a store that just failed is given time to come back
            return
        try:
            self.flush(self._maint_conn)
        except TransientSinkError as exc:  # reported by health(); retried with backoff
            self._failed_uploads += 1
            self._retry_at = now + UPLOAD_RETRY.delay(self._failed_uploads)
            if now - self._last_warning >= 30:
                self._last_warning = now
                log.warning("s3 %s: upload failed, will retry: %s", self.id, exc)
        else:
            self._failed_uploads, self._retry_at = 0, 0.0

    # -- gathering ---------------------------------------------------------------------------

    def _time_of(self, event: Event) -> int:
        if self.config.time_source == "event" and self.config.time_field:
            found = parse_time_us(
                lookup(event.data, self.config.time_field), self.config.time_format
            )
            if found is not None:
                return found
        return event.received_at_us

    def _prefix_of(self, event: Event, cache: dict[int, str]) -> str:
        time_us = self._time_of(event)
        if self.prefix.fields:
            return self.prefix.render(time_us, event.data)
        unit = time_us // self.prefix.unit_us  # the same prefix for a whole hour (or minute)
        found = cache.get(unit)
        if found is None:
            found = cache[unit] = self.prefix.render(time_us)
        return found

    def write(self, events: list[Event], checkpoint: Checkpoint) -> WriteResult:
        """Gather ``events`` into their partitions and commit them with ``checkpoint``."""
        conn = self._conn
        assert conn is not None, "sink is not open"
        now = time.time_ns() // 1000
        parts, errors = self._partition(events, now)
        if self.keeps_processing_failures and checkpoint.dead:
            checkpoint = self._file_processing_failures(checkpoint, errors, now)
        candidates: dict[str, set[str]] = defaultdict(set)  # ids from outside, by stream
        for event in events:
            if event.may_repeat:
                candidates[event.stream].add(event.id)
        self._drop_stored(conn, "data", candidates, parts, now)
        chunks: list[tuple[tuple[str, str, str], bytes, int, int, list[str]]] = []
        for part, group in parts.items():
            if self.config.format == "parquet":
                payload, size, misfits = self._arrow_chunk(part, group, errors, now)
                if misfits:  # filed as failed, not stored: only the others' ids are data
                    group = [e for i, e in enumerate(group) if i not in misfits]
            else:
                payload = b"\n".join([_line(e) for e in group])
                size = len(payload)
            if group:
                chunks.append((part, payload, size, len(group), [e.id for e in group]))
        self._drop_stored(conn, "error", candidates, errors, now)  # misfits found just now too
        for part, records in errors.items():
            if records:
                payload = b"\n".join([_json.encode(r) for r in records])
                ids = [r["eventId"] for r in records]
                chunks.append((part, payload, len(payload), len(records), ids))
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for part, payload, size, rows, ids in chunks:
                    self._gather(conn, part, payload, size, rows, now)
                    record_ids(conn, self.id, part[0], part[1], part[2], ids, now)
                checkpoint.apply(conn, [])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise TransientSinkError(f"cannot gather events: {exc}") from exc
        # The batch is committed: nothing from here on may fail the write, or the runtime would
        # hand the same events over again and they would be gathered twice.
        try:
            self.flush(conn)
        except Exception as exc:  # the events are safe in the spool; retried later
            log.warning("s3 %s: upload failed, will retry: %s", self.id, exc)
        return WriteResult()

    def _partition(
        self, events: list[Event], now: int
    ) -> tuple[
        dict[tuple[str, str, str], list[Event]], dict[tuple[str, str, str], list[dict[str, Any]]]
    ]:
        """The batch's events by partition (kind, stream, prefix), and the records that have no
        partition (by error partition); an event given twice in the batch is taken once."""
        parts: dict[tuple[str, str, str], list[Event]] = defaultdict(list)
        errors: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        cache: dict[int, str] = {}
        # the common case, a prefix of arrival time only, costs a division and a lookup per event
        arrival_only = not self.prefix.fields and self.config.time_source == "arrival"
        unit_us = self.prefix.unit_us
        if any(e.may_repeat for e in events):  # only ids from outside can repeat in a batch
            events = _first_of_each(events)
        if arrival_only and events:
            streams = {e.stream for e in events}
            times = [e.received_at_us for e in events]  # min/max: cheaper than a set of hours
            if len(streams) == 1 and min(times) // unit_us == max(times) // unit_us:
                # the usual batch: one stream, one hour
                parts[("data", events[0].stream, self._prefix_of(events[0], cache))] = events
                return parts, errors
        for event in events:
            try:
                prefix = cache.get(event.received_at_us // unit_us) if arrival_only else None
                if prefix is None:
                    prefix = self._prefix_of(event, cache)
            except PartitionKeyMissing as exc:
                where = self.error_prefix.render(now, error_type=ERROR_PARTITIONING)
                errors[("error", event.stream, where)].append(
                    error_record(
                        event.id,
                        event.received_at_us,
                        event.data,
                        "DynamicPartitioning.MetadataExtractionFailed",
                        str(exc),
                    )
                )
                continue
            parts[("data", event.stream, prefix)].append(event)
        return parts, errors

    def _file_processing_failures(
        self,
        checkpoint: Checkpoint,
        errors: dict[tuple[str, str, str], list[dict[str, Any]]],
        now: int,
    ) -> Checkpoint:
        """Take the records a Firehose function failed out of the dead letters and into the
        ``processing-failed`` error output; returns the checkpoint that saves the rest."""
        kept: list[FailedRecord] = []
        where = self.error_prefix.render(now, error_type=ERROR_PROCESSING)
        for failed in checkpoint.dead:
            if failed.processing is None:
                kept.append(failed)
                continue
            event = failed.event
            errors[("error", event.stream, where)].append(
                error_record(
                    event.id,
                    event.received_at_us,
                    event.data,
                    failed.processing.error_code,
                    failed.error,
                    raw=event.raw,
                    attempts=checkpoint.attempts,
                    lambda_arn=failed.processing.lambda_arn,
                )
            )
        return dataclasses.replace(checkpoint, dead=kept)

    def _drop_stored(
        self,
        conn: sqlite3.Connection,
        kind: str,
        candidates: dict[str, set[str]],
        found: dict[tuple[str, str, str], list[Any]],
        now: int,
    ) -> None:
        """Leave out of ``found`` (events or failed records, by partition) those whose id this
        sink took before as ``kind``: a replay, a client's resend. Data and failures are apart,
        so an event replayed once its failure is fixed is new data."""
        for stream, ids in candidates.items():
            keys = [k for k in found if k[1] == stream]
            if not keys:
                continue
            stored = already_stored(conn, self.id, kind, stream, {k[2] for k in keys}, ids, now)
            if not stored:
                continue
            log.info("s3 %s: %d %s event(s) of %s taken before", self.id, len(stored), kind, stream)
            for k in keys:
                found[k] = [
                    item for item in found[k]
                    if (item.id if isinstance(item, Event) else item["eventId"]) not in stored
                ]  # fmt: skip

    def _arrow_chunk(
        self,
        part: tuple[str, str, str],
        group: list[Event],
        errors: dict[tuple[str, str, str], list[dict[str, Any]]],
        now: int,
    ) -> tuple[bytes, int, set[int]]:
        """Events typed by the declared schema as an Arrow IPC stream and its size; misfits go to
        ``errors`` and their indexes are returned."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        schema = self.config.schema_
        built = table_from_records(
            [e.data for e in group],
            dict(schema.fields),
            required=schema.required,
            unknown=schema.unknown_fields,
            time_format=schema.timestamp_format,
        )
        if built.failed:
            where = self.error_prefix.render(now, error_type=ERROR_FORMAT)
            for index, why in built.failed.items():
                event = group[index]
                errors[("error", part[1], where)].append(
                    error_record(
                        event.id,
                        event.received_at_us,
                        event.data,
                        "DataFormatConversion.MalformedData",
                        why,
                    )
                )
            log.warning("s3 %s: %d record(s) did not fit the schema; they go to %s",
                        self.id, len(built.failed), where)  # fmt: skip
        table = built.table
        if not table.num_rows:
            return b"", 0, set(built.failed)
        sink = pa.BufferOutputStream()
        options = ipc.IpcWriteOptions(compression="lz4")
        with ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes(), int(table.nbytes), set(built.failed)

    def _gather(
        self,
        conn: sqlite3.Connection,
        part: tuple[str, str, str],
        payload: bytes,
        size: int,
        rows: int,
        now: int,
    ) -> None:
        kind, stream, _prefix = part
        pkey = _SEP.join(part)
        conn.execute(
            "INSERT INTO s3_objects (sink, pkey, kind, stream, object_key, created_us, bytes, rows) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sink, pkey) DO UPDATE "
            "SET bytes = bytes + excluded.bytes, rows = rows + excluded.rows",
            (self.id, pkey, kind, stream, self._key(part, now), now, size, rows),
        )
        conn.execute(
            "INSERT INTO s3_chunks (sink, pkey, payload) VALUES (?, ?, ?)", (self.id, pkey, payload)
        )

    def _key(self, part: tuple[str, str, str], now: int) -> str:
        """The key of a partition's next object."""
        kind, stream, prefix = part
        extension = self.extension if kind == "data" else "json.gz"
        return prefix + object_name(stream, now, extension)

    # -- uploading ---------------------------------------------------------------------------

    def flush(self, conn: sqlite3.Connection, *, force: bool = False) -> int:
        """Upload the partitions that are due (all with ``force``); returns how many."""
        config = self.config
        cutoff = time.time_ns() // 1000 - int(config.buffer_interval * 1_000_000)
        with self._flush_lock:
            due = conn.execute(
                "SELECT pkey, kind, object_key FROM s3_objects "
                "WHERE sink = ? AND (? OR bytes >= ? OR created_us <= ?) ORDER BY created_us",
                (self.id, int(force), config.buffer_size, cutoff),
            ).fetchall()
            done = 0
            failures: list[str] = []
            for pkey, kind, object_key in due:
                # one partition that cannot be uploaded (a store refusing its key, chunks that
                # do not combine) must not hold back the others behind it
                try:
                    self._upload(conn, pkey, kind, object_key)
                except Exception as exc:
                    failures.append(f"{object_key}: {exc}")
                    continue
                done += 1
            if failures:
                self._error = f"{len(failures)} object(s) not uploaded; first: {failures[0]}"
                raise TransientSinkError(self._error)
            if due:
                self._error = None
            return done

    def _parquet(self, payloads: list[bytes]) -> bytes:
        """One Parquet file from the partition's Arrow chunks."""
        import pyarrow as pa
        import pyarrow.ipc as ipc

        tables = [ipc.open_stream(payload).read_all() for payload in payloads]
        # chunks gathered before a schema change in the config still go into the same object
        table = pa.concat_tables(tables, promote_options="permissive")
        return parquet_bytes(table, self.compression)

    def _upload(self, conn: sqlite3.Connection, pkey: str, kind: str, object_key: str) -> None:
        assert self.store is not None
        # the partition's totals read in the same statement as its chunks (one snapshot), so
        # they are the totals of exactly these chunks even while the other thread gathers more
        chunks = conn.execute(
            "SELECT c.id, c.payload, o.bytes, o.rows FROM s3_chunks c JOIN s3_objects o "
            "ON o.sink = c.sink AND o.pkey = c.pkey WHERE c.sink = ? AND c.pkey = ? ORDER BY c.id",
            (self.id, pkey),
        ).fetchall()
        payloads = [chunk[1] for chunk in chunks]
        last_id = chunks[-1][0] if chunks else 0
        taken_bytes, taken_rows = (chunks[0][2], chunks[0][3]) if chunks else (0, 0)
        if payloads:
            if kind == "data" and self.config.format == "parquet":
                self.store.put(
                    object_key, self._parquet(payloads), "application/vnd.apache.parquet"
                )
            else:
                body = gzip.compress(b"\n".join(payloads) + b"\n", compresslevel=6, mtime=0)
                self.store.put(object_key, body, "application/x-ndjson")
        now = time.time_ns() // 1000
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "DELETE FROM s3_chunks WHERE sink = ? AND pkey = ? AND id <= ?",
                (self.id, pkey, last_id),
            )
            left = conn.execute(
                "SELECT count(*) FROM s3_chunks WHERE sink = ? AND pkey = ?", (self.id, pkey)
            ).fetchone()[0]
            if left:  # gathered while uploading (the other thread): they get a new object
                # and keep counting towards buffer_size
                conn.execute(
                    "UPDATE s3_objects SET object_key = ?, created_us = ?, "
                    "bytes = bytes - ?, rows = rows - ? "
                    "WHERE sink = ? AND pkey = ?",
                    (self._key(_split(pkey), now), now, taken_bytes, taken_rows, self.id, pkey),
                )
            else:
                conn.execute("DELETE FROM s3_objects WHERE sink = ? AND pkey = ?", (self.id, pkey))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.uploaded_objects += 1


def _first_of_each(events: list[Event]) -> list[Event]:
    """``events`` without the repeats of an id (the first is kept)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for event in events:
        key = (event.stream, event.id)
        if key not in seen:
            seen.add(key)
            out.append(event)
    return out


def _split(pkey: str) -> tuple[str, str, str]:
    kind, stream, prefix = pkey.split(_SEP, 2)
    return kind, stream, prefix


def healthcheck(config: S3Config) -> str | None:
    """Whether the bucket (or directory) can be reached and written (nothing is written)."""
    if config.bucket is None:
        from headrace.sinks.lake.sink import writable_directory_problem

        assert config.path is not None
        return writable_directory_problem(Path(config.path))
    try:
        S3Store(config.bucket, endpoint_url=config.endpoint_url, region=config.region,
                max_attempts=1, multipart_threshold=config.multipart_threshold,
                part_size=config.part_size).check()  # fmt: skip
    except TransientSinkError as exc:
        return str(exc)
    return None


__all__ = ["S3_SCHEMA", "S3Sink", "error_record"]
