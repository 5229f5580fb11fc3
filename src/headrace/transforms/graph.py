"""``SinkTransforms``: a sink's routes (``headrace.config.graph``) run over a delivery batch.

A Firehose-contract function may return bytes that are not a JSON object (``Event.raw``). Only
a transform that declares ``takes_raw`` (another Firehose function) and a sink that writes lines
take them; anywhere else such an event fails with a reason naming the transform that made it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import defaultdict

from headrace.config.graph import routes_of
from headrace.config.models import Pipeline
from headrace.transforms import (
    CommitHook,
    Transform,
    TransformContext,
    TransformResult,
    build_transform,
)
from headrace.types import Event, FailedRecord

log = logging.getLogger("headrace.transforms")


class SinkTransforms:
    """The transforms on the way to one sink, each its own instance, run route by route."""

    def __init__(self, pipeline: Pipeline, sink_id: str, *, takes_raw: bool = False) -> None:
        self.sink_id = sink_id
        self.takes_raw = takes_raw  # whether the sink writes opaque bytes (lines) as they are
        self.routes = routes_of(pipeline, sink_id)
        self.order = _route_order(self.routes)
        used = {tid for path in self.routes.values() for tid in path}
        configs = pipeline.transforms
        self.transforms: dict[str, Transform] = {
            tid: build_transform(tid, configs[tid]) for tid in configs if tid in used
        }
        self.dropped: dict[str, int] = defaultdict(int)

    @property
    def active(self) -> bool:
        """Whether any event passes a transform on its way."""
        return bool(self.transforms)

    def open(self, context: TransformContext) -> None:
        """Open every transform (closing those opened if one fails)."""
        opened: list[Transform] = []
        try:
            for transform in self.transforms.values():
                transform.open(context)
                opened.append(transform)
        except BaseException:
            for transform in opened:
                transform.close()
            raise

    def close(self) -> None:
        """Close every transform."""
        for transform in self.transforms.values():
            try:
                transform.close()
            except Exception:
                log.exception("transform %s: closing failed", transform.id)

    def apply(self, events: list[Event]) -> TransformResult:
        """Run each event's route; failures name the transform and carry the original event.

        Each transform runs once per batch over every event that reaches it, whichever source
        it came from, so a batch-wide view (``dedupe``'s, a lookup's) covers all of them."""
        groups: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            groups[event.source].append(event)
        step = dict.fromkeys(groups, 0)  # source → index in its route of the next transform
        originals = {event.id: event for event in events}
        made_raw: dict[str, str] = {}  # event id → the transform that returned its bytes
        failed: list[FailedRecord] = []
        hooks: list[CommitHook] = []
        dropped = 0
        for tid in self.order:
            arriving = [
                source
                for source in groups
                if step[source] < len(path := self.routes.get(source, []))
                and path[step[source]] == tid
            ]
            if not arriving:
                continue
            batch = [event for source in arriving for event in groups[source]]
            for source in arriving:
                step[source] += 1
                groups[source] = []
            transform = self.transforms[tid]
            if not getattr(transform, "takes_raw", False):
                batch = self._refuse_raw(batch, made_raw, f"transform {tid}", originals, failed)
            if not batch:
                continue
            result = transform.apply(batch)
            for event in result.events:  # transforms keep an event's source
                groups[event.source if event.source in step else arriving[0]].append(event)
                if event.raw is not None:
                    made_raw[event.id] = tid
            dropped += result.dropped
            self.dropped[tid] += result.dropped
            hooks.extend(result.on_commit)
            for item in result.failed:
                original = original_of(originals, item.event.id) or item.event
                failed.append(
                    dataclasses.replace(item, event=original, error=f"{tid}: {item.error}")
                )
        out = [event for group in groups.values() for event in group]
        if not self.takes_raw:
            out = self._refuse_raw(out, made_raw, f"sink {self.sink_id}", originals, failed)
        return TransformResult(out, failed, dropped, hooks)

    @staticmethod
    def _refuse_raw(
        events: list[Event],
        made_raw: dict[str, str],
        taker: str,
        originals: dict[str, Event],
        failed: list[FailedRecord],
    ) -> list[Event]:
        """``events`` without those carrying bytes, which go to ``failed`` naming their maker."""
        if not made_raw:
            return events
        kept = []
        for event in events:
            if event.raw is None:
                kept.append(event)
                continue
            maker = made_raw.get(event.id, "a transform")
            error = (
                f"{maker}: returned data that is not a JSON object ({event.raw[:60]!r}); {taker} "
                "needs JSON objects (an s3 sink with format: ndjson, or a lake, keeps such data "
                "as it is)"
            )
            original = original_of(originals, event.id) or event
            failed.append(FailedRecord(original, "transform_bad_output", error))
        return kept


def original_of(originals: dict[str, Event], event_id: str) -> Event | None:
    """The event as it was before the transforms, also for an event a transform made from it
    (``<id>.<n>``: one of several records a Firehose function returned for one)."""
    found = originals.get(event_id)
    if found is None and "." in event_id:
        found = originals.get(event_id.rsplit(".", 1)[0])
    return found


def _route_order(routes: dict[str, list[str]]) -> list[str]:
    """The transforms of ``routes`` in an order where each comes after all it reads from."""
    after: dict[str, set[str]] = defaultdict(set)
    for path in routes.values():
        for tid in path:
            after.setdefault(tid, set())
        for before, tid in itertools.pairwise(path):
            after[tid].add(before)
    order: list[str] = []
    while after:  # the graph has no cycles (graph_problems refuses them)
        ready = [tid for tid, needs in after.items() if not needs] or list(after)
        order.extend(ready)
        for tid in ready:
            del after[tid]
        for needs in after.values():
            needs.difference_update(ready)
    return order


__all__ = ["SinkTransforms", "original_of"]
