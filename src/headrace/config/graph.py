"""The input graph of a pipeline: which sources reach a sink, through which transforms, in which
order (pure functions of the file).

Transforms and sinks name their ``inputs`` (sources or transforms). For one sink, every source it
reaches has exactly one route, a list of transforms applied first to last; a source reaching a sink
by two routes would deliver its events twice and is refused when the file is checked, as is a
cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headrace.config.models import Pipeline


def _routes(
    name: str, sources: set[str], inputs: dict[str, list[str]], trail: tuple[str, ...]
) -> list[tuple[str, list[str]]]:
    if name in sources:
        return [(name, [])]
    if name in trail or name not in inputs:
        return []  # a cycle or an unknown name: reported by graph_problems
    out = []
    for upstream in inputs[name]:
        for source, path in _routes(upstream, sources, inputs, (*trail, name)):
            out.append((source, [*path, name]))
    return out


def routes_of(pipeline: Pipeline, sink_id: str) -> dict[str, list[str]]:
    """Source id → the transform ids its events pass on their way to ``sink_id``."""
    inputs = {tid: list(getattr(t, "inputs", [])) for tid, t in pipeline.transforms.items()}
    found: dict[str, list[str]] = {}
    for name in pipeline.sinks[sink_id].inputs:
        for source, path in _routes(name, set(pipeline.sources), inputs, ()):
            found.setdefault(source, path)
    return found


def sources_of(pipeline: Pipeline, sink_id: str) -> list[str]:
    """The sources whose events reach ``sink_id``."""
    return list(routes_of(pipeline, sink_id))


def graph_problems(raw: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Cycles, sources reaching a sink twice, transforms nothing reads and transforms named like
    a source (on the raw file)."""

    def mapping(key: str) -> dict[str, Any]:
        value = raw.get(key)
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}

    def inputs_of(body: Any) -> list[str]:
        found = body.get("inputs") if isinstance(body, dict) else None
        return [str(x) for x in found] if isinstance(found, list) else []

    sources = set(mapping("sources"))
    transforms = {tid: inputs_of(body) for tid, body in mapping("transforms").items()}
    problems: list[tuple[tuple[str, ...], str]] = []
    for tid in transforms:
        if tid in sources:
            # an input naming both would mean the source: the transform would silently never run
            problems.append(
                (("transforms", tid),
                 f'has the name of a source; inputs naming "{tid}" would be ambiguous (rename '
                 "the transform)")
            )  # fmt: skip
        if _in_cycle(tid, transforms):
            problems.append((("transforms", tid, "inputs"), "the inputs form a cycle"))
    read = {name for ins in transforms.values() for name in ins}
    for sink_id, body in mapping("sinks").items():
        read.update(inputs_of(body))
        seen: dict[str, list[str]] = {}
        for name in inputs_of(body):
            for source, path in _routes(name, sources, transforms, ()):
                if source in seen and seen[source] != path:
                    routes = " and ".join(" → ".join([source, *p]) for p in (seen[source], path))
                    problems.append(
                        (("sinks", sink_id, "inputs"),
                         f'source "{source}" reaches this sink twice ({routes}); its events '
                         "would be delivered twice")
                    )  # fmt: skip
                seen.setdefault(source, path)
    for tid in transforms:
        if tid not in read:
            problems.append((("transforms", tid), "is not an input of any sink or transform"))
    return problems


def _in_cycle(start: str, inputs: dict[str, list[str]]) -> bool:
    stack, seen = list(inputs.get(start, [])), set()
    while stack:
        name = stack.pop()
        if name == start:
            return True
        if name in seen or name not in inputs:
            continue
        seen.add(name)
        stack.extend(inputs[name])
    return False


__all__ = ["graph_problems", "routes_of", "sources_of"]
