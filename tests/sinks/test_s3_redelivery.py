"""The s3 sink stores a replayed or resent event once, in Parquet and in NDJSON objects."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from headrace.config.load import parse_pipeline
from headrace.errors import ConfigError
from headrace.sinks.s3.config import S3Config
from headrace.sinks.s3.sink import S3Sink
from headrace.types import Event
from support.buffer import checkpoint

HOUR_US = 3600 * 1_000_000
T0 = (time.time_ns() // 1000 // HOUR_US) * HOUR_US + 60_000_000  # a minute into this hour


def config(store: Path, fmt: str, **kw: Any) -> S3Config:
    body: dict[str, Any] = {"type": "s3", "inputs": ["web"], "path": str(store), "format": fmt,
                            "buffer_interval": 3600, **kw}  # fmt: skip
    if fmt == "parquet":
        body["schema"] = {"fields": {"requestid": "string", "n": "int64"}}
    return S3Config.model_validate(body)


def batch(ids: list[str], *, at: int = T0, may_repeat: bool = False) -> list[Event]:
    return [
        Event(i, "clicks", "web", at + n, {"requestid": i, "n": n}, may_repeat)
        for n, i in enumerate(ids)
    ]


def stored(store: Path) -> list[str]:
    """The requestids of every object under ``store`` (data, not errors)."""
    found = []
    for path in sorted(store.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            if path.suffix == ".parquet":
                found += (
                    pq.read_table(io.BytesIO(path.read_bytes())).column("requestid").to_pylist()
                )
            elif not path.relative_to(store).parts[0].endswith("failed"):
                lines = gzip.decompress(path.read_bytes()).splitlines()
                found += [msgspec.json.decode(line)["requestid"] for line in lines]
    return sorted(found)


def opened(cfg: S3Config, data_dir: Path) -> S3Sink:
    sink = S3Sink("s3", cfg, data_dir)
    sink.open()
    return sink


def write(sink: S3Sink, events: list[Event]) -> None:
    sink.write(events, checkpoint("s3", {"seg": 1}))


def flush(sink: S3Sink) -> None:
    assert sink._conn is not None
    sink.flush(sink._conn, force=True)


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_a_replayed_batch_adds_nothing_whether_uploaded_or_still_gathered(
    fmt: str, data_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    sink = opened(config(store, fmt), data_dir)
    ids = [f"e{i}" for i in range(20)]
    write(sink, batch(ids[:10]))
    flush(sink)  # the first half is in an object already
    write(sink, batch(ids[10:]))  # the second half waits in the spool
    replayed = batch(ids, may_repeat=True)
    write(sink, replayed)
    write(sink, replayed)
    flush(sink)
    assert stored(store) == sorted(ids)
    sink.close()
    # the ids survive a restart
    sink = opened(config(store, fmt), data_dir)
    write(sink, replayed)
    flush(sink)
    assert stored(store) == sorted(ids)
    sink.close()


@pytest.mark.parametrize("fmt", ["parquet", "ndjson"])
def test_a_client_resend_with_the_same_id_is_stored_once(
    fmt: str, data_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    sink = opened(config(store, fmt), data_dir)
    write(sink, batch(["r1", "r2"], may_repeat=True))
    # resent later (the next hour's prefix), and twice in one batch, with one new event
    resent = batch(["r2", "r1", "r2", "r3"], at=T0 + HOUR_US, may_repeat=True)
    write(sink, resent)
    flush(sink)
    assert stored(store) == ["r1", "r2", "r3"]
    sink.close()


def test_generated_ids_are_not_looked_up_and_old_ids_are_forgotten(
    data_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    sink = opened(config(store, "ndjson"), data_dir)
    write(sink, batch(["g1", "g2"]))
    flush(sink)
    assert sink._conn is not None
    (count,) = sink._conn.execute("SELECT count(*) FROM stored_ids").fetchone()
    assert count == 1  # one row per gathered chunk, not one per event
    # past the dedupe window the ids are forgotten (a replay that old stores again)
    sink._conn.execute("UPDATE stored_ids SET created_us = created_us - ?", (8 * 24 * HOUR_US,))
    sink._last_forget = 0.0
    sink.maintain()
    (count,) = sink._conn.execute("SELECT count(*) FROM stored_ids").fetchone()
    assert count == 0
    sink.close()


def test_a_dedupe_window_shorter_than_the_buffer_retention_is_refused() -> None:
    text = """\
sources:
  web: {type: http}
buffer: {retention: 3d}
sinks:
  s3: {type: s3, inputs: [web], path: /tmp/x, format: ndjson, dedupe_window: %s}
"""
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(text % "1d", file="pipeline.yaml")
    (problem,) = caught.value.problems
    assert problem.path == "sinks.s3.dedupe_window" and problem.line == 5
    assert "shorter than buffer.retention" in problem.message
    parse_pipeline(text % "3d")


def test_an_event_filed_as_failed_is_stored_once_its_failure_is_fixed(
    data_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    sink = opened(config(store, "parquet"), data_dir)

    def with_bad_e2(may_repeat: bool) -> list[Event]:
        events = batch(["e1", "e2"], may_repeat=may_repeat)
        events[1].data["n"] = "two"  # does not fit int64: filed under format-conversion-failed/
        return events

    write(sink, with_bad_e2(False))
    write(sink, with_bad_e2(True))  # replayed, still bad: nothing added anywhere
    flush(sink)
    failed = list(store.rglob("*.json.gz"))
    assert stored(store) == ["e1"] and len(failed) == 1
    assert len(gzip.decompress(failed[0].read_bytes()).splitlines()) == 1  # filed once
    # replayed once the value is right (a fixed producer, a transform changed): new data
    fixed = batch(["e2"], may_repeat=True)
    write(sink, fixed)
    flush(sink)
    assert stored(store) == ["e1", "e2"]
    sink.close()
