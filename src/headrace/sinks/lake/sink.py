"""The lake sink: Parquet (zstd) files under ``<root>/<stream>/dt=YYYY-MM-DD/hour=HH/``.

Invariants:
- Columns: ``_id`` (event id), ``_received_at``, ``_time`` (event time when the stream has a
  ``time_field``, else receive time; it decides the partition), the stream's user columns, and
  ``_extra``: a JSON object of every field that has no column of its own (a type that does not fit
  an inferred column, too many columns, a reserved name). Nothing an event carried is dropped.
- A column's type is fixed when it is first seen or declared (``lake_columns``); an event whose
  field does not fit a *declared* type goes to the dead-letter store as ``type_mismatch``.
- What a Firehose function returned that is not JSON (``Event.raw``: CSV, a line of text) is kept
  as text (without a final newline) in a ``_raw`` column (a catalog column like the user's); bytes that are not UTF-8 go to
  the dead-letter store as ``transform_bad_output``.
- A file is written under a hidden temporary name, fsync'd and renamed, and becomes visible only
  when the catalog transaction that also saves the buffer positions commits. After a crash,
  files the catalog does not list are removed on open and their events are delivered again.
- An event whose id may already be stored (ids taken from the request, replays) is checked
  against the ids of its partition and of recent files; generated ids are unique by construction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from headrace.buffer.records import BufferedRequest
from headrace.errors import TransientSinkError
from headrace.ids import event_id, new_base_id
from headrace.sinks.arrow_bodies import BodyColumns, body_columns
from headrace.sinks.base import APPEND, RAW, READ
from headrace.sinks.lake.config import LakeConfig as LakeSinkConfig
from headrace.sinks.lake.config import StreamSchema
from headrace.sinks.parquet import (
    UNSET,
    arrow_type,
    coerce,
    fsync_path,
    infer_type,
    table_from_rows,
    write_parquet_file,
)
from headrace.storage.lake_catalog import (
    INT64_MAX,
    INT64_MIN,
    LAKE_SCHEMA,
    RAW_COLUMN,
    SYSTEM_COLUMNS,
    columns_of,
    parse_time_us,
    partition_of,
)
from headrace.storage.state import Checkpoint, connect, init_schema
from headrace.storage.stored_ids import RECENT_US, ids_among, string_array
from headrace.types import Event, FailedRecord, WriteResult

log = logging.getLogger("headrace.sinks.lake")

_json = msgspec.json.Encoder()
_HOUR_US = 3600 * 1_000_000


@dataclass
class _StreamColumns:
    types: dict[str, str] = field(default_factory=dict)
    lowered: set[str] = field(default_factory=set)
    # column name -> the one Python type stored as-is (the hot path of shaping a row)
    exact: dict[str, type] = field(default_factory=dict)

    def add(self, name: str, column_type: str) -> None:
        self.types[name] = column_type
        self.lowered.add(name.lower())
        python_type = _EXACT_TYPES.get(column_type)
        if python_type is None:
            self.exact.pop(name, None)
        else:
            self.exact[name] = python_type


_EXACT_TYPES: dict[str, type] = {"string": str, "int64": int, "float64": float, "bool": bool}


@dataclass
class _File:
    """A file to write: one partition's rows of a batch as an Arrow table."""

    stream: str
    partition: str
    table: Any
    min_time_us: int
    max_time_us: int


@dataclass
class _Written:
    stream: str
    partition: str
    rel_path: str
    rows: int
    bytes: int
    min_time_us: int
    max_time_us: int


class LakeSink:
    """Stores batches as Parquet files in the local lake; see the module docstring."""

    capabilities = frozenset({APPEND, RAW, READ})
    commits_checkpoint = True

    def __init__(self, sink_id: str, config: LakeSinkConfig, data_dir: Path) -> None:
        self.id = sink_id
        self.config = config
        self.root = Path(config.path) if config.path else data_dir / "lake"
        self.state_path = data_dir / "state.db"
        self._conn: sqlite3.Connection | None = None
        self._maint_conn: sqlite3.Connection | None = None
        self._columns: dict[str, _StreamColumns] = {}
        self._last_compaction = 0.0
        self._error: str | None = None
        self.compactions = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the lake directory, the catalog tables, and remove uncommitted files."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.state_path)
        init_schema(self._conn, [LAKE_SCHEMA])
        self._remove_orphans(self._conn)

    def close(self) -> None:
        """Close the catalog connections."""
        for conn in (self._conn, self._maint_conn):
            if conn is not None:
                conn.close()
        self._conn = self._maint_conn = None

    def health(self) -> str | None:
        """Why the sink is unhealthy (its last write failed), or ``None``."""
        return self._error

    def _remove_orphans(self, conn: sqlite3.Connection) -> None:
        known = {
            row[0] for row in conn.execute("SELECT path FROM lake_files WHERE sink = ?", (self.id,))
        }
        known |= {
            row[0]
            for row in conn.execute("SELECT path FROM lake_garbage WHERE sink = ?", (self.id,))
        }
        removed = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if not (name.endswith(".parquet") or name.endswith(".tmp")):
                    continue
                full = Path(dirpath) / name
                if full.relative_to(self.root).as_posix() not in known:
                    with contextlib.suppress(FileNotFoundError):
                        full.unlink()
                    removed += 1
        if removed:
            log.warning(
                "lake %s: removed %d file(s) of batches that never committed", self.id, removed
            )

    # -- writing -----------------------------------------------------------------------------

    def _stream_columns(self, conn: sqlite3.Connection, stream: str) -> _StreamColumns:
        cols = self._columns.get(stream)
        if cols is None:
            cols = _StreamColumns()
            for name, column_type in columns_of(conn, self.id, stream).items():
                cols.add(name, column_type)
            self._columns[stream] = cols
        return cols

    def _shape(
        self,
        event: Event,
        schema: StreamSchema,
        cols: _StreamColumns,
        new: dict[str, str],
        exact: dict[str, type],
    ) -> dict[str, Any] | str:
        """The row of ``event`` (user fields, ``_extra``), or why it does not fit the schema."""
        if event.raw is not None:
            return self._raw_row(event.raw_line(), cols, new)
        row: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in event.data.items():
            python_type = exact.get(name)
            # the range check inlined (no call per int; this loop is the hot path); ``value`` is
            # an int there, which mypy cannot see through ``type(value) is python_type``
            if (
                python_type is not None
                and type(value) is python_type
                and (python_type is not int or INT64_MIN <= value <= INT64_MAX)  # type: ignore[operator]
            ):
                row[name] = value
                continue
            if name in SYSTEM_COLUMNS:
                extra[name] = value
                continue
            declared = schema.fields.get(name)
            column_type = declared or cols.types.get(name) or new.get(name)
            if column_type is None:
                column_type = infer_type(value)
                full = len(cols.types) + len(new) >= self.config.max_columns
                lowered = name.lower()
                clash = lowered in cols.lowered or any(n.lower() == lowered for n in new)
                if column_type is None or full or clash:
                    extra[name] = value
                    continue
                new[name] = column_type
            stored = coerce(value, column_type)
            if stored is UNSET:
                if declared:
                    return f'field "{name}" is declared {declared}; got {type(value).__name__}'
                extra[name] = value
                continue
            row[name] = stored
        row["_extra"] = _json.encode(extra).decode() if extra else None
        return row

    @staticmethod
    def _raw_row(raw: bytes, cols: _StreamColumns, new: dict[str, str]) -> dict[str, Any] | str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return (
                f"the transform returned bytes that are not UTF-8 text ({exc}); the lake keeps text"
            )
        if RAW_COLUMN not in cols.types:
            new[RAW_COLUMN] = "string"
        return {RAW_COLUMN: text, "_extra": None}

    def write(self, events: list[Event], checkpoint: Checkpoint) -> WriteResult:
        """Write ``events`` as one file per partition and commit them with ``checkpoint``."""
        conn = self._conn
        assert conn is not None, "sink is not open"
        failed: list[FailedRecord] = []
        parts: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        new_columns: dict[str, dict[str, str]] = defaultdict(dict)
        check_ids: dict[str, set[str]] = defaultdict(set)
        seen: set[tuple[str, str]] = set()
        hours: dict[int, str] = {}  # hour: its partition
        streams: dict[
            str, tuple[StreamSchema, _StreamColumns, dict[str, str], dict[str, type]]
        ] = {}
        for event in events:
            if (event.stream, event.id) in seen:
                continue  # the same event twice in one batch
            seen.add((event.stream, event.id))
            context = streams.get(event.stream)
            if context is None:
                schema = self.config.schema_for(event.stream)
                cols = self._stream_columns(conn, event.stream)
                added = new_columns[event.stream]
                for name, declared in schema.fields.items():
                    if cols.types.get(name) != declared:
                        added[name] = declared  # declared types win over inferred ones
                # the exact-type shortcut only for columns whose type is settled
                exact = {k: v for k, v in cols.exact.items() if k not in added}
                context = streams[event.stream] = (schema, cols, added, exact)
            schema, cols, added, exact = context
            shaped = self._shape(event, schema, cols, added, exact)
            if isinstance(shaped, str):
                reason = "type_mismatch" if event.raw is None else "transform_bad_output"
                failed.append(FailedRecord(event, reason, shaped))
                continue
            time_us = None
            if schema.time_field:
                time_us = parse_time_us(event.data.get(schema.time_field), schema.time_format)
            shaped["_id"] = event.id
            shaped["_received_at"] = event.received_at_us
            shaped["_time"] = event.received_at_us if time_us is None else time_us
            hour = shaped["_time"] // _HOUR_US
            partition = hours.get(hour)
            if partition is None:
                partition = hours[hour] = partition_of(shaped["_time"])
            parts[(event.stream, partition)].append(shaped)
            if event.may_repeat:
                check_ids[event.stream].add(event.id)
        if check_ids:
            self._drop_stored(conn, parts, check_ids)
        files: list[_File] = []
        for (stream, partition), rows in parts.items():
            if rows:
                cols = self._stream_columns(conn, stream)
                types = {**cols.types, **new_columns[stream]}
                times = [r["_time"] for r in rows]
                table = table_from_rows(rows, self._file_columns(rows, types))
                files.append(_File(stream, partition, table, min(times), max(times)))
        self._store(conn, files, new_columns, checkpoint, failed)
        return WriteResult(failed)

    def write_requests(
        self, requests: list[BufferedRequest], checkpoint: Checkpoint
    ) -> WriteResult | None:
        """Write a batch straight from its stored request bodies (``headrace.sinks.arrow_bodies``:
        parsed by Arrow, no dict per event), committed with ``checkpoint`` as ``write`` does; or
        ``None`` (nothing written) when the batch needs ``write``'s event-by-event rules: a stream
        with a ``time_field``, ids from outside, a field whose column is not settled yet (its
        first batch decides its type), a value that does not fit its column as it is, a nested
        value (a ``json`` column). ``write`` of the same events stores the same rows."""
        conn = self._conn
        assert conn is not None, "sink is not open"
        groups: dict[tuple[str, str], list[BufferedRequest]] = defaultdict(list)
        hours: dict[int, str] = {}
        bases: set[bytes] = set()
        for request in requests:
            if request.base_id in bases:
                return None  # one request twice in a batch: ``write`` stores its events once
            bases.add(request.base_id)
            hour = request.received_at_us // _HOUR_US
            partition = hours.get(hour)
            if partition is None:
                partition = hours[hour] = partition_of(request.received_at_us)
            groups[(request.stream, partition)].append(request)
        files: list[_File] = []
        for (stream, partition), group in groups.items():
            fields = self._settled_fields(conn, stream)
            built = None if fields is None else body_columns(group, fields)
            if built is None:
                return None
            if built.ids:
                times = built.received_at_us
                table = _with_system_columns(built)
                files.append(_File(stream, partition, table, min(times), max(times)))
        self._store(conn, files, {}, checkpoint, [])
        return WriteResult()

    def _settled_fields(self, conn: sqlite3.Connection, stream: str) -> dict[str, Any] | None:
        """The Arrow types of the stream's columns that ``write_requests`` can fill as Arrow
        parses them; ``None`` if the stream needs ``write`` (a time field, a declared type not
        settled yet)."""
        schema = self.config.schema_for(stream)
        if schema.time_field:
            return None
        cols = self._stream_columns(conn, stream)
        if any(cols.types.get(name) != declared for name, declared in schema.fields.items()):
            return None
        # timestamp and json columns are left out: an event holding one is "unexpected" there
        return {name: arrow_type(kind) for name, kind in cols.types.items() if kind in _EXACT_TYPES}

    def _store(
        self,
        conn: sqlite3.Connection,
        files: list[_File],
        new_columns: dict[str, dict[str, str]],
        checkpoint: Checkpoint,
        failed: list[FailedRecord],
    ) -> None:
        """Write ``files`` and commit them with the new columns and ``checkpoint``, or leave no
        trace of them."""
        written: list[_Written] = []
        try:
            for file in files:
                written.append(self._write_file(file))
            self._commit(conn, written, new_columns, checkpoint, failed)
        except BaseException as exc:
            for item in written:  # never leave files the catalog does not list
                with contextlib.suppress(OSError):
                    (self.root / item.rel_path).unlink()
            self._error = f"cannot write the lake: {exc}"
            if isinstance(exc, OSError | sqlite3.Error):
                raise TransientSinkError(self._error) from exc
            raise
        for stream, added in new_columns.items():
            cols = self._stream_columns(conn, stream)
            for name, column_type in added.items():
                cols.add(name, column_type)
        self._error = None

    def _drop_stored(
        self,
        conn: sqlite3.Connection,
        parts: dict[tuple[str, str], list[dict[str, Any]]],
        check_ids: dict[str, set[str]],
    ) -> None:
        import pyarrow.parquet as pq

        recent = time.time_ns() // 1000 - RECENT_US
        for stream, candidates in check_ids.items():
            partitions = [p for (s, p) in parts if s == stream]
            marks = ",".join("?" * len(partitions))
            rows = conn.execute(
                "SELECT path FROM lake_files WHERE sink = ? AND stream = ? AND "
                f"(partition IN ({marks}) OR created_us >= ?)",
                (self.id, stream, *partitions, recent),
            ).fetchall()
            stored: set[str] = set()
            wanted = string_array(candidates)
            for (rel,) in rows:
                with contextlib.suppress(FileNotFoundError):
                    ids = pq.read_table(self.root / rel, columns=["_id"]).column("_id")
                    stored.update(ids_among(ids, wanted))
            if stored:
                for key in [k for k in parts if k[0] == stream]:
                    parts[key] = [r for r in parts[key] if r["_id"] not in stored]

    @staticmethod
    def _file_columns(rows: list[dict[str, Any]], types: dict[str, str]) -> list[tuple[str, str]]:
        """A file's columns: the system ones, the user columns some row holds, ``_extra``."""
        present = [name for name in types if any(name in row for row in rows)]
        columns = [("_id", "string"), ("_received_at", "timestamp"), ("_time", "timestamp")]
        columns += [(name, types[name]) for name in present]
        columns.append(("_extra", "string"))
        return columns

    def _write_file(self, file: _File) -> _Written:
        name = f"{event_id(new_base_id(), 0)}.parquet"
        rel_dir = f"{file.stream}/{file.partition}"
        size = write_parquet_file(file.table, self.root / rel_dir / name, "zstd")
        return _Written(
            file.stream,
            file.partition,
            f"{rel_dir}/{name}",
            file.table.num_rows,
            size,
            file.min_time_us,
            file.max_time_us,
        )

    def _commit(
        self,
        conn: sqlite3.Connection,
        written: list[_Written],
        new_columns: dict[str, dict[str, str]],
        checkpoint: Checkpoint,
        failed: list[FailedRecord],
    ) -> None:
        now = time.time_ns() // 1000
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stream, added in new_columns.items():
                for name, column_type in added.items():
                    conn.execute(
                        "INSERT INTO lake_columns (sink, stream, name, type, position) VALUES "
                        "(?, ?, ?, ?, (SELECT COALESCE(MAX(position), 0) + 1 FROM lake_columns "
                        "WHERE sink = ? AND stream = ?)) ON CONFLICT (sink, stream, name) "
                        "DO UPDATE SET type = excluded.type",
                        (self.id, stream, name, column_type, self.id, stream),
                    )
            conn.executemany(
                "INSERT INTO lake_files (sink, stream, partition, path, rows, bytes, min_time_us, "
                "max_time_us, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        self.id,
                        w.stream,
                        w.partition,
                        w.rel_path,
                        w.rows,
                        w.bytes,
                        w.min_time_us,
                        w.max_time_us,
                        now,
                    )
                    for w in written
                ],
            )
            checkpoint.apply(conn, failed)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- background work ---------------------------------------------------------------------

    def maintain(self) -> None:
        """Delete replaced files past their grace period and compact small files."""
        if self._maint_conn is None:
            self._maint_conn = connect(self.state_path)
        conn = self._maint_conn
        self._collect_garbage(conn)
        settings = self.config.compaction
        if not settings.enabled or time.monotonic() - self._last_compaction < settings.interval:
            return
        self._last_compaction = time.monotonic()
        small = conn.execute(
            "SELECT stream, partition, path, bytes FROM lake_files WHERE sink = ? AND bytes < ? "
            "ORDER BY created_us",
            (self.id, settings.small_file_bytes),
        ).fetchall()
        tiers: dict[tuple[str, str, int], list[str]] = defaultdict(list)
        for stream, partition, path, size in small:
            tiers[(stream, partition, size_tier(size))].append(path)
        for (stream, partition, _tier), paths in tiers.items():
            if len(paths) < settings.min_files:
                continue
            try:
                self.compact(conn, stream, partition, paths)
            except Exception:
                log.exception("lake %s: compacting %s/%s failed", self.id, stream, partition)

    def compact(
        self, conn: sqlite3.Connection, stream: str, partition: str, paths: list[str] | None = None
    ) -> int:
        """Merge files of a partition (``paths``, else all its small ones) into one, dropping
        repeated ids; returns how many files were merged."""
        import duckdb

        settings = self.config.compaction
        if paths is None:
            rows = conn.execute(
                "SELECT path FROM lake_files WHERE sink = ? AND stream = ? AND partition = ? "
                "AND bytes < ? ORDER BY created_us",
                (self.id, stream, partition, settings.small_file_bytes),
            ).fetchall()
            paths = [row[0] for row in rows]
        old = paths
        if len(old) < 2:
            return 0
        name = f"{event_id(new_base_id(), 0)}.parquet"
        directory = self.root / stream / partition
        tmp = directory / f".{name}.tmp"
        db = duckdb.connect()
        try:
            db.execute(
                f"COPY (SELECT * FROM read_parquet($files, union_by_name = true, hive_partitioning = false) "
                "QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _received_at) = 1 "
                f"ORDER BY _time) TO {_sql_string(str(tmp))} (FORMAT parquet, COMPRESSION zstd)",
                {"files": [str(self.root / p) for p in old]},
            )
            stats = db.execute(
                "SELECT count(*), epoch_us(min(_time)), epoch_us(max(_time)) "
                f"FROM read_parquet({_sql_string(str(tmp))})"
            ).fetchone()
            assert stats is not None
            count, low, high = stats
        finally:
            db.close()
        fsync_path(tmp)
        os.replace(tmp, directory / name)
        fsync_path(directory)
        rel = f"{stream}/{partition}/{name}"
        now = time.time_ns() // 1000
        delete_after = now + int(settings.grace * 1_000_000)
        conn.execute("BEGIN IMMEDIATE")
        try:
            marks = ",".join("?" * len(old))
            conn.execute(
                f"DELETE FROM lake_files WHERE sink = ? AND path IN ({marks})", (self.id, *old)
            )
            conn.execute(
                "INSERT INTO lake_files (sink, stream, partition, path, rows, bytes, min_time_us, "
                "max_time_us, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.id,
                    stream,
                    partition,
                    rel,
                    count,
                    (directory / name).stat().st_size,
                    low,
                    high,
                    now,
                ),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO lake_garbage (sink, path, delete_after_us) VALUES (?, ?, ?)",
                [(self.id, p, delete_after) for p in old],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            with contextlib.suppress(OSError):
                (directory / name).unlink()
            raise
        self.compactions += 1
        log.info(
            "lake %s: compacted %d files of %s/%s into one", self.id, len(old), stream, partition
        )
        return len(old)

    def _collect_garbage(self, conn: sqlite3.Connection) -> None:
        now = time.time_ns() // 1000
        due = conn.execute(
            "SELECT path FROM lake_garbage WHERE sink = ? AND delete_after_us <= ?", (self.id, now)
        ).fetchall()
        for (rel,) in due:
            with contextlib.suppress(FileNotFoundError):
                (self.root / rel).unlink()
            conn.execute("DELETE FROM lake_garbage WHERE sink = ? AND path = ?", (self.id, rel))


def _with_system_columns(built: BodyColumns) -> Any:
    """The lake's file table of a batch parsed by Arrow: ``_id``, ``_received_at`` and ``_time``
    (the receive time: ``write_requests`` takes no stream with a time field), the user columns
    in their catalog order, and an ``_extra`` that holds nothing (every field has its column)."""
    import pyarrow as pa

    received = pa.array(built.received_at_us, arrow_type("timestamp"))
    columns = {"_id": pa.array(built.ids, pa.string()), "_received_at": received, "_time": received}
    for name in built.table.column_names:
        columns[name] = built.table.column(name)
    columns["_extra"] = pa.nulls(len(built.ids), pa.string())
    return pa.table(columns)


def size_tier(size: int) -> int:
    """Files within a factor of 8 in size share a tier; compaction merges within a tier, so a
    merged file is rewritten again only once enough files of its own size have gathered."""
    tier = 0
    limit = 256 * 1024
    while size >= limit:
        tier += 1
        limit *= 8
    return tier


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def healthcheck(config: LakeSinkConfig) -> str | None:
    """Whether the lake's directory can be written (nothing is written); ``None`` if so."""
    return writable_directory_problem(Path(config.path)) if config.path else None


def writable_directory_problem(path: Path) -> str | None:
    """Why files could not be written under ``path`` (or its nearest existing parent)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


__all__ = ["LakeSink", "arrow_type", "coerce", "infer_type"]
