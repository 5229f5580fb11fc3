"""An S3 sink filing by event time sends an event whose time has no calendar date (outside
years 1-9999) to the error prefix instead of failing the whole write (for ever)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from headrace.sinks.s3.config import S3Config
from headrace.sinks.s3.sink import S3_SCHEMA, S3Sink
from headrace.storage import state
from headrace.types import Event
from support.buffer import checkpoint

T0 = 1_763_800_000_000_000


def test_an_event_time_past_year_9999_goes_to_the_error_prefix(
    data_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    cfg = S3Config.model_validate({"type": "s3", "inputs": ["web"], "path": str(store),
                                   "format": "ndjson",
                                   "time_source": "event", "time_field": "ts"})  # fmt: skip
    conn = state.connect(data_dir / "state.db")
    state.init_schema(conn, [S3_SCHEMA])
    sink = S3Sink("s3", cfg, data_dir)
    sink.open()
    try:
        batch = [Event("good", "clicks", "web", T0, {"ts": "2024-01-01T00:00:00Z"}),
                 Event("far", "clicks", "web", T0, {"ts": 1e18}),
                 Event("past", "clicks", "web", T0, {"ts": -1e17})]  # fmt: skip
        sink.write(batch, checkpoint("s3", {"seg": 1}))
    finally:
        sink.close()
    conn.close()
    files = sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file())
    assert any(f.startswith("2024/01/01/00/") for f in files), files
    errors = [p for p in store.rglob("*") if p.is_file() and "partitioning-failed" in p.as_posix()]
    assert errors, files
    records = [
        json.loads(line) for p in errors for line in gzip.decompress(p.read_bytes()).splitlines()
    ]
    assert sorted(r["eventId"] for r in records) == ["far", "past"], records
    assert all("1-9999" in r["errorMessage"] for r in records)
