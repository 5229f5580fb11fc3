"""``headrace validate --connect``: every sink, transform and warehouse a pipeline names is asked,
through its registered ``healthcheck``, whether what it needs answers. Nothing is written. The
checks run side by side, each within ``TIMEOUT`` seconds."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, TimeoutError
from typing import Any

from headrace.config.bulk import BulkExportSource
from headrace.config.models import Pipeline
from headrace.registry import Kind, components

TIMEOUT = 20.0


def _targets(pipeline: Pipeline) -> list[tuple[str, Kind, Any]]:
    """(where in the file, kind, config) of everything with a healthcheck to run."""
    targets: list[tuple[str, Kind, Any]] = []
    for sink_id, sink in pipeline.sinks.items():
        targets.append((f"sinks.{sink_id}", "sink", sink))
    for transform_id, transform in pipeline.transforms.items():
        targets.append((f"transforms.{transform_id}", "transform", transform))
    for source_id, source in pipeline.sources.items():
        if isinstance(source, BulkExportSource):
            targets.append((f"sources.{source_id}.warehouse", "warehouse", source.warehouse))
        for index, auth in enumerate(getattr(source, "auth", [])):
            targets.append((f"sources.{source_id}.auth[{index}]", "authorizer", auth))
    return targets


def check_pipeline(pipeline: Pipeline) -> Iterator[tuple[str, str | None]]:
    """(where, why it is unreachable or ``None``) for each thing the pipeline depends on."""
    registry = components()
    checks: list[tuple[str, Callable[[], str | None]]] = []
    for where, kind, config in _targets(pipeline):
        component = registry.get(kind, config.type)
        if component.healthcheck is not None:
            checks.append((where, functools.partial(component.check_health, config)))
    with ThreadPoolExecutor(max_workers=min(8, len(checks) or 1)) as pool:
        futures = [(where, pool.submit(_safely, check)) for where, check in checks]
        for where, future in futures:
            try:
                yield where, future.result(timeout=TIMEOUT)
            except TimeoutError:
                yield where, f"no answer within {TIMEOUT:g} s"


def _safely(check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    except Exception as exc:  # a check that breaks says what broke, it does not stop the rest
        return f"{type(exc).__name__}: {exc}"


__all__ = ["check_pipeline"]
