"""The streams the dashboard can show, per readable sink: those the pipeline names and those the
lake has stored (``query.streams`` decides what is known). Catalog reads only: listing streams
never opens a Parquet file or a PostgreSQL connection."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from headrace.config.models import Pipeline
from headrace.query.lake import _state
from headrace.query.streams import declared_streams
from headrace.sinks.lake.config import LakeConfig
from headrace.sinks.postgres.config import PostgresConfig


def _stored(data_dir: Path) -> dict[tuple[str, str], tuple[int, int | None, int | None]]:
    """(sink, stream): (events, first event µs, last event µs) from the lake catalog."""
    catalog = _state(data_dir)
    if catalog is None:
        return {}
    found: dict[tuple[str, str], tuple[int, int | None, int | None]] = {}
    try:
        with contextlib.suppress(sqlite3.OperationalError):  # no lake tables yet
            for sink, stream, rows, first, last in catalog.execute(
                "SELECT sink, stream, sum(rows), min(min_time_us), max(max_time_us) "
                "FROM lake_files GROUP BY sink, stream"
            ):
                found[(sink, stream)] = (int(rows), int(first), int(last))
            for sink, stream in catalog.execute("SELECT DISTINCT sink, stream FROM lake_columns"):
                found.setdefault((sink, stream), (0, None, None))  # compacted away to nothing
    finally:
        catalog.close()
    return found


def known_streams(pipeline: Pipeline, data_dir: Path) -> list[dict[str, Any]]:
    """Every stream of every lake and PostgreSQL sink, by name then sink."""
    stored = _stored(data_dir)
    out: list[dict[str, Any]] = []
    for sink_id, sink in pipeline.sinks.items():
        if not isinstance(sink, LakeConfig | PostgresConfig):
            continue
        names = list(declared_streams(pipeline, sink_id))
        if isinstance(sink, LakeConfig):
            names += [s for (i, s) in stored if i == sink_id and s not in names]
        for stream in names:
            events, first, last = stored.get((sink_id, stream), (0, None, None))
            entry: dict[str, Any] = {"stream": stream, "sink": sink_id, "type": sink.type,
                                     "first_us": first, "last_us": last}  # fmt: skip
            # a table's rows are counted where a page shows them (the overview), not here
            entry["events"] = events if isinstance(sink, LakeConfig) else None
            out.append(entry)
    out.sort(key=lambda e: (e["stream"], e["sink"]))
    return out
