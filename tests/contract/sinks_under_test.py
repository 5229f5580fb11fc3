"""The sinks the contract suite runs over, one ``SinkUnderTest`` each (see ``harness``).

To add a sink (a plugin, say), append one entry to ``SINKS``:

1. ``provision(env)`` makes what one test needs (a database schema, a bucket, a directory; a
   ``env.proxy(host, port)`` in front of a server, so an outage can be played) and returns a
   ``Destination``: the sink's config dict as a pipeline file would declare it, a ``read``
   that returns everything stored as ``Row(event id or key, data)``, the ``outage`` and, if the
   sink files refusals itself, ``read_failures``.
2. Say what it claims: ``capabilities`` and ``commits_checkpoint`` exactly as the built sink
   does (a case checks it), a ``refusal`` (a record it refuses for good, or ``None``), where an
   outage shows (``outage_fails``: ``write``, ``settle`` or ``None``) and, for a sink that holds
   batches back, ``settle``.
3. Run ``pytest tests/contract -k <id>``. A case that fails because of a bug in the sink goes in
   ``known_bugs`` (case → precise reason); it then runs as ``xfail(strict=True)``, and turns
   into a failure the day the bug is fixed, so the entry is updated then.

The events are those of ``support.events``: ``requestid`` (the id, or a merge key), ``n``
(an int64) and ``page``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from contract.harness import SINK_ID, Destination, Env, Failure, Outage, Refusal, Row, SinkUnderTest
from headrace.sinks.base import APPEND, MERGE, RAW, READ, Sink
from headrace.types import Event
from support.dynamodb import table_items
from support.events import FIELDS, KEY_FIELD, SOURCE, STREAM
from support.objectstores import (
    BucketObjects,
    DirectoryObjects,
    ObjectListing,
    data_objects,
    error_records,
    lines_of,
    parquet_records,
)
from support.pgschema import HOST, PORT, dsn_via, table_rows, throwaway_schema
from support.volumes import DetachableDirectory

PG_COLUMNS = {KEY_FIELD: "text", "n": "bigint", "page": "text"}


def _present(record: dict[str, Any], extra: Any = None) -> dict[str, Any]:
    """A stored record's fields: its non-null columns but headrace's own, plus ``_extra``."""
    data = {k: v for k, v in record.items() if not k.startswith("_") and v is not None}
    if isinstance(extra, str):
        extra = json.loads(extra)
    return {**data, **(extra or {})}


def n_not_a_number(event: Event) -> Event:
    """``event`` with text where an int64 ``n`` belongs."""
    return event.with_data({**event.data, "n": "not a number"})


def without_key(event: Event) -> Event:
    """``event`` without its ``requestid``."""
    return event.with_data({k: v for k, v in event.data.items() if k != KEY_FIELD})


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


# -- lake ------------------------------------------------------------------------------------


def lake(env: Env) -> Destination:
    """A lake on a detachable directory; its catalog in the test's state database."""
    volume = DetachableDirectory(env.tmp_path, "lake")
    config = {"type": "lake", "inputs": [SOURCE], "path": str(volume.path),
              "streams": {STREAM: {"fields": FIELDS}}}  # fmt: skip

    def read() -> list[Row]:
        import pyarrow.parquet as pq

        from headrace.storage import state

        path = env.data_dir / "state.db"
        if not path.exists():
            return []
        conn = state.connect(path, readonly=True)
        try:  # the files the catalog lists are what readers see
            files = [
                r[0] for r in conn.execute("SELECT path FROM lake_files WHERE sink = ?", (SINK_ID,))
            ]
        finally:
            conn.close()
        rows = []
        for rel in files:
            for record in pq.read_table(volume.path / rel).to_pylist():
                data = _present(record, record.get("_extra"))
                if record.get("_raw") is not None:
                    data["_raw"] = record["_raw"]
                rows.append(Row(record["_id"], data))
        return rows

    return Destination(config, read, Outage(volume.detach, volume.attach))


# -- postgres --------------------------------------------------------------------------------


def postgres(**mode: Any) -> Callable[[Env], Destination]:
    """A table in a throwaway schema, reached through a cuttable proxy; ``mode`` adds to the
    config (``write_mode``...)."""

    def provision(env: Env) -> Destination:
        schema = env.enter(throwaway_schema())
        proxy = env.proxy(HOST, PORT)
        config = {"type": "postgres", "inputs": [SOURCE], "dsn": dsn_via(proxy.port),
                  "schema": schema, "table": "events", "columns": PG_COLUMNS,
                  **mode}  # fmt: skip

        def read() -> list[Row]:
            return [
                Row(r["_event_id"], _present(r, r.get("_extra")))
                for r in table_rows(schema, "events")
            ]

        return Destination(config, read, Outage(proxy.cut, proxy.restore))

    return provision


# -- s3 --------------------------------------------------------------------------------------


def _object_rows(listing: ObjectListing) -> list[Row]:
    rows = []
    for key, body in data_objects(listing).items():
        if key.endswith(".parquet"):
            for record in parquet_records(body):
                data = _present(record, record.get("_extra"))
                rows.append(Row(data.get(KEY_FIELD), data))
            continue
        for line in lines_of(body):
            try:
                decoded = json.loads(line)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                rows.append(Row(decoded.get(KEY_FIELD), decoded))
            else:  # a line a Firehose function returned as it was
                rows.append(Row(None, {"_raw": line.decode()}))
    return rows


def _object_failures(listing: ObjectListing) -> list[Failure]:
    return [
        Failure(r["eventId"], r["errorCode"], r["errorMessage"]) for r in error_records(listing)
    ]


def s3_config(fmt: str, **store: Any) -> dict[str, Any]:
    """An s3 sink's config: nothing is uploaded until ``settle`` (an hour's interval)."""
    config = {"type": "s3", "inputs": [SOURCE], "format": fmt, "buffer_interval": 3600, **store}
    if fmt == "parquet":
        config["schema"] = {"fields": FIELDS}
    return config


def s3_bucket(fmt: str) -> Callable[[Env], Destination]:
    """A bucket on the moto server, reached through a cuttable proxy."""

    def provision(env: Env) -> Destination:
        objects = BucketObjects(env.moto_url, env.unique("contract"))
        objects.create()
        proxy = env.proxy(*_host_port(env.moto_url))
        # two attempts per S3 call: an outage fails an upload after one backoff, not eight
        config = s3_config(fmt, bucket=objects.bucket, endpoint_url=proxy.url, max_attempts=2)
        return Destination(
            config,
            lambda: _object_rows(objects),
            Outage(proxy.cut, proxy.restore),
            lambda: _object_failures(objects),
        )

    return provision


def s3_directory(fmt: str) -> Callable[[Env], Destination]:
    """A local directory as the object store, on a detachable volume."""

    def provision(env: Env) -> Destination:
        volume = DetachableDirectory(env.tmp_path, "objects")
        objects = DirectoryObjects(volume.path)
        return Destination(
            s3_config(fmt, path=str(volume.path)),
            lambda: _object_rows(objects),
            Outage(volume.detach, volume.attach),
            lambda: _object_failures(objects),
        )

    return provision


def upload_everything(sink: Sink) -> None:
    """Upload every partition the s3 sink has gathered (its ``flush(conn, force=True)``)."""
    from headrace.sinks.s3.sink import S3Sink

    assert isinstance(sink, S3Sink)
    assert sink._conn is not None, "sink is not open"
    sink.flush(sink._conn, force=True)


PARQUET_MISFIT = Refusal(
    n_not_a_number,
    reason="DataFormatConversion.MalformedData",
    mentions='field "n" is declared int64',
    filed="error_output",
)


# -- dynamodb --------------------------------------------------------------------------------


def dynamodb(env: Env) -> Destination:
    """A table (made by the sink's ``create_table``) keyed by ``requestid``, on the moto server
    through a cuttable proxy."""
    table = env.unique("contract")
    proxy = env.proxy(*_host_port(env.moto_url))
    config = {"type": "dynamodb", "inputs": [SOURCE], "table": table,
              "partition_key": {"name": KEY_FIELD}, "endpoint_url": proxy.url,
              "create_table": True, "max_attempts": 2}  # fmt: skip
    moto_url = env.moto_url

    def read() -> list[Row]:
        return [Row(item[KEY_FIELD], item) for item in table_items(moto_url, table)]

    return Destination(config, read, Outage(proxy.cut, proxy.restore))


# -- the registry ----------------------------------------------------------------------------

# -- the example plugin (tests/plugin), built as its entry point would be ------------------


def plugin_jsonl(env: Env) -> Destination:
    """The example plugin's ``jsonl_file`` sink, on a detachable directory (its module is
    imported from tests/plugin, which registers it as its entry point would)."""
    importlib.import_module("headrace_example.sink")
    volume = DetachableDirectory(env.tmp_path, "jsonl")
    path = volume.path / "events.jsonl"
    config = {"type": "jsonl_file", "inputs": [SOURCE], "path": str(path)}

    def read() -> list[Row]:
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return [Row(r.pop("id"), r) for r in records]

    return Destination(config, read, Outage(volume.detach, volume.attach))


SINKS: list[SinkUnderTest] = [
    SinkUnderTest(
        "lake",
        capabilities=frozenset({APPEND, RAW, READ}),
        commits_checkpoint=True,
        provision=lake,
        refusal=Refusal(n_not_a_number, "type_mismatch", 'field "n" is declared int64'),
        outage_fails="write",
    ),
    SinkUnderTest(
        "postgres",
        capabilities=frozenset({APPEND}),
        commits_checkpoint=False,
        provision=postgres(),
        refusal=Refusal(n_not_a_number, "rejected_by_database", "bigint"),
        outage_fails="write",
    ),
    SinkUnderTest(
        "postgres-merge",
        capabilities=frozenset({APPEND, MERGE}),
        commits_checkpoint=False,
        provision=postgres(write_mode="merge", dedupe_key=[KEY_FIELD], on_conflict="update"),
        refusal=Refusal(n_not_a_number, "rejected_by_database", "bigint"),
        outage_fails="write",
    ),
    SinkUnderTest(
        "s3-parquet-moto",
        capabilities=frozenset({APPEND}),
        commits_checkpoint=True,
        provision=s3_bucket("parquet"),
        refusal=PARQUET_MISFIT,
        outage_fails="settle",
        settle=upload_everything,
    ),
    SinkUnderTest(
        "s3-ndjson-moto",
        capabilities=frozenset({APPEND, RAW}),
        commits_checkpoint=True,
        provision=s3_bucket("ndjson"),
        refusal=None,  # a line takes any JSON object and any bytes a function returned
        outage_fails="settle",
        settle=upload_everything,
    ),
    SinkUnderTest(
        "s3-parquet-dir",
        capabilities=frozenset({APPEND}),
        commits_checkpoint=True,
        provision=s3_directory("parquet"),
        refusal=PARQUET_MISFIT,
        outage_fails="settle",
        settle=upload_everything,
    ),
    SinkUnderTest(
        "dynamodb",
        capabilities=frozenset({APPEND, MERGE, READ}),
        commits_checkpoint=False,
        provision=dynamodb,
        refusal=Refusal(without_key, "missing_key", f'"{KEY_FIELD}"'),
        outage_fails="write",
    ),
    SinkUnderTest(
        "plugin-jsonl_file",
        capabilities=frozenset({APPEND}),
        commits_checkpoint=False,
        provision=plugin_jsonl,
        refusal=None,  # a line takes any JSON object
        outage_fails="write",
    ),
]

__all__ = ["SINKS"]
