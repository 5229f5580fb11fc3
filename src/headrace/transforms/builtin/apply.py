"""The built-in transforms that need no outside service: ``remap``, ``filter`` and ``dedupe``.

``dedupe`` keeps what it has seen in the state database::

    transform_dedupe(scope, key, seen_us)   scope = "<sink>/<transform>", key = 16-byte hash

written by the commit hook in the transaction that saves the sink's position.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from headrace.keys import lookup
from headrace.storage.lake_catalog import parse_time_us
from headrace.storage.state import connect
from headrace.transforms import CommitHook, TransformContext, TransformResult
from headrace.transforms.builtin.config import Condition, DedupeConfig, FilterConfig, RemapConfig
from headrace.types import Event, FailedRecord

_json = msgspec.json.Encoder()
_MISSING = object()


def _pop(data: dict[str, Any], path: str) -> Any:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        return node.pop(last, _MISSING)
    return _MISSING


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _get(data: dict[str, Any], path: str) -> Any:
    if "." not in path:
        return data.get(path, _MISSING)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return node.get(last, _MISSING) if isinstance(node, dict) else _MISSING


def cast_value(value: Any, kind: str) -> Any:
    """``value`` as ``kind`` (see ``RemapConfig.cast``); ``ValueError`` if it cannot be."""
    if kind == "string":
        return value if isinstance(value, str) else _json.encode(value).decode()
    if kind == "json":
        return _json.encode(value).decode()
    if kind == "int":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            try:
                return int(text)
            except ValueError:
                number = float(text)
                if number.is_integer():
                    return int(number)
        raise ValueError(f"{value!r} is not a whole number")
    if kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise ValueError(f"{value!r} is not a number")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise ValueError(f"{value!r} is not true or false")
    time_us = parse_time_us(value)
    if time_us is None:
        raise ValueError(f"{value!r} is not a time")
    if kind == "timestamp_ms":
        return time_us // 1000
    if kind == "timestamp_s":
        return time_us // 1_000_000
    return iso8601(time_us)


def iso8601(time_us: int) -> str:
    """A time in µs as ISO 8601 UTC with milliseconds (``2025-11-22T08:26:40.123Z``)."""
    moment = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Remap:
    """Rename, drop, add, copy and cast fields (see ``RemapConfig``)."""

    def __init__(self, transform_id: str, config: RemapConfig) -> None:
        self.id = transform_id
        self.config = config
        self._nested = any(
            "." in name
            for name in [*config.rename, *config.rename.values(), *config.drop, *config.add,
                         *config.copy_fields, *config.cast]
        )  # fmt: skip

    def open(self, context: TransformContext) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def _metadata(self, event: Event, source: str) -> Any:
        if source == "$event_id":
            return event.id
        if source == "$stream":
            return event.stream
        if source == "$source":
            return event.source
        if source == "$received_at":
            return iso8601(event.received_at_us)
        if source == "$received_at_ms":
            return event.received_at_us // 1000
        return _get(event.data, source)

    def apply(self, events: list[Event]) -> TransformResult:
        """Remap each event; one whose cast fails goes to the dead-letter store."""
        config = self.config
        out: list[Event] = []
        failed: list[FailedRecord] = []
        for event in events:
            # a copy: the dead-letter store keeps the event as it came
            data = copy.deepcopy(event.data) if self._nested else dict(event.data)
            for old, new in config.rename.items():
                value = _pop(data, old)
                if value is not _MISSING:
                    _set(data, new, value)
            for name in config.drop:
                _pop(data, name)
            for name, value in config.add.items():
                _set(data, name, copy.deepcopy(value))
            for name, source in config.copy_fields.items():
                value = self._metadata(event, source)
                if value is not _MISSING:
                    _set(data, name, value)
            error = None
            for name, kind in config.cast.items():
                value = _get(data, name)
                if value is _MISSING or value is None:
                    continue
                try:
                    _set(data, name, cast_value(value, kind))
                except (ValueError, OverflowError) as exc:
                    error = f'cannot cast "{name}" to {kind}: {exc}'
                    break
            if error:
                failed.append(FailedRecord(event, "cast_failed", error))
                continue
            out.append(event.with_data(data))
        return TransformResult(out, failed)


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if actual is _MISSING:
        return op in ("not_equals", "not_in") or (op == "exists" and expected is False)
    if op == "exists":
        return bool(expected)
    if op == "equals":
        return bool(actual == expected)
    if op == "not_equals":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        return isinstance(actual, list | dict) and expected in actual
    if op == "matches":
        return isinstance(actual, str) and _regex(expected).search(actual) is not None
    numeric = (int, float)
    both_numbers = isinstance(actual, numeric) and isinstance(expected, numeric)
    both_text = isinstance(actual, str) and isinstance(expected, str)
    if not (both_numbers or both_text) or isinstance(actual, bool):
        return False  # a number is never greater than a string: the event does not match
    if op == "gt":
        return bool(actual > expected)
    if op == "gte":
        return bool(actual >= expected)
    if op == "lt":
        return bool(actual < expected)
    return bool(actual <= expected)


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = _REGEX_CACHE[pattern] = re.compile(pattern)
    return compiled


def matches(condition: Condition, data: dict[str, Any]) -> bool:
    """Whether ``data`` satisfies ``condition`` (see ``FilterConfig``)."""
    if "all" in condition:
        return all(matches(c, data) for c in condition["all"])
    if "any" in condition:
        return any(matches(c, data) for c in condition["any"])
    if "not" in condition:
        return not matches(condition["not"], data)
    field = condition["field"]
    (op,) = (k for k in condition if k != "field")
    return _compare(op, _get(data, field), condition[op])


class Filter:
    """Keep the events that match a condition."""

    def __init__(self, transform_id: str, config: FilterConfig) -> None:
        self.id = transform_id
        self.condition = config.condition

    def open(self, context: TransformContext) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def apply(self, events: list[Event]) -> TransformResult:
        """The matching events; the rest count as dropped."""
        kept = [e for e in events if matches(self.condition, e.data)]
        return TransformResult(kept, dropped=len(events) - len(kept))


DEDUPE_SCHEMA = """
CREATE TABLE IF NOT EXISTS transform_dedupe (
    scope TEXT NOT NULL, key BLOB NOT NULL, seen_us INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
"""
_LOOKUP_CHUNK = 500
_PRUNE_EVERY = 60.0


class Dedupe:
    """Drop events seen within a window; what was seen survives restarts (module docstring)."""

    def __init__(self, transform_id: str, config: DedupeConfig) -> None:
        self.id = transform_id
        self.config = config
        self.window_us = int(config.window * 1_000_000)
        self.scope = ""
        self._conn: sqlite3.Connection | None = None
        self._last_prune = 0.0

    def open(self, context: TransformContext) -> None:
        """Create the table; this transform's identities are scoped to the sink."""
        self.scope = f"{context.sink_id}/{self.id}"
        self._conn = connect(context.state_path)
        self._conn.executescript(DEDUPE_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def key_of(self, event: Event) -> bytes | None:
        """The 16-byte identity of an event; ``None`` if a field is missing or null (such an
        event has no identity to compare, so it is never taken for a duplicate)."""
        if self.config.fields:
            values = [lookup(event.data, name) for name in self.config.fields]
            if any(value is None for value in values):
                return None
            raw = _json.encode(values)
        else:
            raw = event.id.encode()
        return hashlib.blake2b(raw, digest_size=16).digest()

    def _stored(self, keys: list[bytes]) -> dict[bytes, int]:
        assert self._conn is not None, "transform is not open"
        found: dict[bytes, int] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, seen_us FROM transform_dedupe WHERE scope = ? AND key IN ({marks})",
                (self.scope, *chunk),
            )
            found.update(rows.fetchall())
        return found

    def apply(self, events: list[Event]) -> TransformResult:
        """The events not seen within the window; the rest are dropped."""
        keys = [self.key_of(e) for e in events]
        stored = self._stored(list({key for key in keys if key is not None}))
        kept: list[Event] = []
        seen: dict[bytes, tuple[int, str]] = {}
        for event, key in zip(events, keys, strict=True):
            if key is None:
                kept.append(event)
                continue
            last = seen[key][0] if key in seen else stored.get(key)
            if last is not None and abs(event.received_at_us - last) <= self.window_us:
                continue
            seen[key] = (event.received_at_us, event.id)
            kept.append(event)
        rows = [(key, at, event_id) for key, (at, event_id) in seen.items()]
        return TransformResult(kept, dropped=len(events) - len(kept), on_commit=[self._saver(rows)])

    def _saver(self, found: list[tuple[bytes, int, str]]) -> CommitHook:
        def save(conn: sqlite3.Connection, undelivered: set[str]) -> None:
            rows = [
                (self.scope, key, at) for key, at, event_id in found if event_id not in undelivered
            ]
            conn.executemany(
                "INSERT INTO transform_dedupe (scope, key, seen_us) VALUES (?, ?, ?) "
                "ON CONFLICT (scope, key) DO UPDATE SET seen_us = MAX(seen_us, excluded.seen_us)",
                rows,
            )
            now = time.monotonic()
            if rows and now - self._last_prune >= _PRUNE_EVERY:
                self._last_prune = now
                # relative to the newest delivered event, not the clock: a replay of old events
                # must still find what was seen around them
                cutoff = max(at for _scope, _key, at in rows) - 2 * self.window_us
                conn.execute(
                    "DELETE FROM transform_dedupe WHERE scope = ? AND seen_us < ?",
                    (self.scope, cutoff),
                )

        return save


__all__ = ["Dedupe", "Filter", "Remap", "cast_value", "iso8601", "matches"]
