"""Which streams a sink knows, so a read of a stream that does not exist says so (404
``unknown_stream``) instead of answering "0 events".

A stream is known to a sink when the pipeline declares it there, or when the sink has stored it:

- declared: a source whose events reach the sink (directly or through transforms) and whose path
  does not name the stream (``{stream}``) gives its events the stream of its own id; a lake
  sink's ``streams:`` keys name streams too (``"*"`` aside);
- stored: the lake catalog lists a file or a column of the stream in that sink.

A known stream with nothing in the asked range is an ordinary, empty answer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from headrace.config.models import Pipeline
from headrace.query.lake import QueryError, _state
from headrace.sinks.lake.config import LakeConfig


def declared_streams(pipeline: Pipeline, sink_id: str) -> list[str]:
    """The streams the pipeline itself names for ``sink_id``, in the file's order."""
    from headrace.config.graph import sources_of

    sink = pipeline.sinks[sink_id]
    named: list[str] = []
    for source_id in sources_of(pipeline, sink_id):
        source = pipeline.sources.get(source_id)
        path = getattr(source, "path", None) or ""
        if "{stream}" not in path and source_id not in named:
            named.append(source_id)
    if isinstance(sink, LakeConfig):
        named += [s for s in sink.streams if s != "*" and s not in named]
    return named


def stored_in_lake(data_dir: Path, sink_id: str, stream: str) -> bool:
    """Whether the lake catalog holds anything of ``stream`` in ``sink_id``."""
    catalog = _state(data_dir)
    if catalog is None:
        return False
    try:
        row = catalog.execute(
            "SELECT 1 FROM lake_files WHERE sink = ? AND stream = ? "
            "UNION ALL SELECT 1 FROM lake_columns WHERE sink = ? AND stream = ? LIMIT 1",
            (sink_id, stream, sink_id, stream),
        ).fetchone()
    except sqlite3.OperationalError:
        return False  # the catalog's tables are created with the first delivery
    finally:
        catalog.close()
    return row is not None


def is_known(pipeline: Pipeline, data_dir: Path, sink_id: str, sink: object, stream: str) -> bool:
    """Whether ``stream`` is known to the sink (see the module docstring)."""
    if stream in declared_streams(pipeline, sink_id):
        return True
    return isinstance(sink, LakeConfig) and stored_in_lake(data_dir, sink_id, stream)


def require_known(
    pipeline: Pipeline, data_dir: Path, sink_id: str, sink: object, stream: str
) -> None:
    """Raise ``QueryError("unknown_stream")`` (a 404) unless ``stream`` is known to the sink."""
    if not is_known(pipeline, data_dir, sink_id, sink, stream):
        raise QueryError(
            "unknown_stream",
            f'no stream "{stream}" in sink "{sink_id}": nothing has been stored in it and the '
            "pipeline does not name it (streams appear once their first events are delivered)",
            status=404,
        )
