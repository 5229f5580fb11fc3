"""Which http source a path leads to: the routes of a pipeline, built once.

Every http source takes ``/v1/streams/<source id>/events``, and its own ``path`` if it has one;
a path with ``{stream}`` in it takes any stream in that segment (the default pipeline's
``/v1/streams/{stream}/events``).
"""

from __future__ import annotations

from dataclasses import dataclass

from headrace.config.base import Limits
from headrace.config.models import Pipeline
from headrace.config.sources import HttpSource

STREAM_ROUTE_PREFIX = "/v1/streams/"


@dataclass(frozen=True)
class Route:
    """Where a path leads: a source, and its stream (``None``: taken from the path)."""

    source_id: str
    source: HttpSource
    stream: str | None
    limits: Limits


@dataclass(frozen=True)
class _PatternRoute:
    prefix: str
    suffix: str
    route: Route


class Router:
    """Paths to sources, built once from the pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.exact: dict[str, Route] = {}
        self.patterns: list[_PatternRoute] = []
        for source_id, source in pipeline.http_sources().items():
            limits = pipeline.limits_for(source)
            self.exact[f"{STREAM_ROUTE_PREFIX}{source_id}/events"] = Route(
                source_id, source, source_id, limits
            )
            if source.path and "{stream}" in source.path:
                prefix, suffix = source.path.rstrip("/").split("{stream}", 1)
                self.patterns.append(
                    _PatternRoute(prefix, suffix, Route(source_id, source, None, limits))
                )
            elif source.path:
                self.exact[source.path.rstrip("/") or "/"] = Route(
                    source_id, source, source_id, limits
                )

    def match(self, path: str) -> tuple[Route, str] | None:
        """The route of ``path`` and the stream it names, if any."""
        path = path.rstrip("/") or "/"
        route = self.exact.get(path)
        if route is not None:
            assert route.stream is not None
            return route, route.stream
        for pattern in self.patterns:
            if path.startswith(pattern.prefix) and path.endswith(pattern.suffix):
                stream = path[len(pattern.prefix) : len(path) - len(pattern.suffix)]
                if "/" not in stream and stream:
                    return pattern.route, stream
        return None


def path_is_stream_api(path: str) -> bool:
    """Whether ``path`` is under ``/v1/streams/`` (the unbounded-by-default events API)."""
    return path.startswith(STREAM_ROUTE_PREFIX)
