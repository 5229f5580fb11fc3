"""Object keys, Firehose-style: one template engine for the S3 sink and the local lake.

A template is literal text with expressions::

    !{timestamp:yyyy-MM-dd}             the record's time (UTC), Java DateTimeFormatter letters:
                                        yyyy uuuu yy MM dd HH mm ss SSS, 'quoted text' literal
    !{partitionKeyFromQuery:field}      a field of the record (dotted names reach into objects);
    !{partitionKeyFromLambda:field}     the same (a transform puts the key in the record)
    !{firehose:error-output-type}       why records failed (``format-conversion-failed``, ...)
    !{firehose:random-string}           11 random characters

Values from records are percent-encoded (``/`` included), so a record can add a key segment but
never a level or a ``..``. Rendering the time part is cached per time unit, since formatting a
datetime per record costs more than the rest of the key.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

_EXPR = re.compile(r"!\{([A-Za-z]+):([^}]*)\}")
_JAVA_LETTERS = {
    "yyyy": ("%Y", 3600 * 24),
    "uuuu": ("%Y", 3600 * 24),
    "yy": ("%y", 3600 * 24),
    "MM": ("%m", 3600 * 24),
    "dd": ("%d", 3600 * 24),
    "HH": ("%H", 3600),
    "mm": ("%M", 60),
    "ss": ("%S", 1),
}
_SAFE = "-_.~=+@,:"
ERROR_FORMAT = "format-conversion-failed"
ERROR_PARTITIONING = "partitioning-failed"
ERROR_PROCESSING = "processing-failed"
DEFAULT_TIME_PREFIX = "!{timestamp:yyyy/MM/dd/HH}/"


class PartitionKeyMissing(ValueError):
    """A record lacks the field a ``partitionKeyFromQuery`` expression needs."""


def java_to_strftime(pattern: str) -> tuple[str, int]:
    """A Java date pattern as a strftime format, and the smallest unit it shows in µs
    (milliseconds are shown with ``%f``, cut to three digits by the caller)."""
    out: list[str] = []
    unit_s: float = 3600 * 24
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            if end < 0:
                raise ValueError(f"unclosed quote in timestamp pattern {pattern!r}")
            out.append(pattern[i + 1 : end].replace("%", "%%") or "'")
            i = end + 1
            continue
        if ch.isalpha():
            run = ch
            while i + len(run) < len(pattern) and pattern[i + len(run)] == ch:
                run += ch
            if run == "SSS":
                out.append("\x1fms\x1f")
                unit_s = min(unit_s, 0.001)
            elif run in _JAVA_LETTERS:
                code, unit = _JAVA_LETTERS[run]
                out.append(code)
                unit_s = min(unit_s, unit)
            else:
                raise ValueError(
                    f"timestamp pattern letter {run!r} is not supported "
                    "(use yyyy, yy, MM, dd, HH, mm, ss, SSS and 'quoted text')"
                )
            i += len(run)
            continue
        out.append("%%" if ch == "%" else ch)
        i += 1
    return "".join(out), max(int(unit_s * 1_000_000), 1000)


@dataclass(frozen=True)
class _Part:
    kind: str  # "text" | "time" | "field" | "error" | "random"
    value: str
    unit_us: int = 0


def encode_value(value: Any) -> str:
    """A record value as one key segment (percent-encoded), or ``PartitionKeyMissing``."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float) and value is not None:
        text = str(value)
    else:
        raise PartitionKeyMissing(f"not a scalar: {type(value).__name__}")
    if not text:
        raise PartitionKeyMissing("empty")
    encoded = quote(text, safe=_SAFE)
    return "%2E" * len(encoded) if set(encoded) == {"."} else encoded


def lookup(data: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or ``None``."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class KeyTemplate:
    """A parsed key template; see the module docstring."""

    def __init__(self, text: str, *, default_time: str | None = None) -> None:
        self.text = text
        parts = self._parse(text)
        if default_time is not None and not any(p.kind == "time" for p in parts):
            parts += self._parse(default_time)
        self.parts = tuple(parts)
        self.fields = tuple(p.value for p in self.parts if p.kind == "field")
        self.uses_time = any(p.kind == "time" for p in self.parts)
        units = [p.unit_us for p in self.parts if p.kind == "time"]
        self._unit_us = min(units) if units else 3600 * 1_000_000
        self.unit_us = self._unit_us
        """Rendered keys of a template without fields are equal within one such unit of time."""
        self._time_text = lru_cache(maxsize=4096)(self._format_time)

    @staticmethod
    def _parse(text: str) -> list[_Part]:
        parts: list[_Part] = []
        pos = 0
        for match in _EXPR.finditer(text):
            if match.start() > pos:
                parts.append(_Part("text", text[pos : match.start()]))
            namespace, arg = match.group(1), match.group(2).strip()
            if namespace == "timestamp":
                fmt, unit = java_to_strftime(arg)
                parts.append(_Part("time", fmt, unit))
            elif namespace in ("partitionKeyFromQuery", "partitionKeyFromLambda"):
                if not arg:
                    raise ValueError(f"{match.group(0)} needs a field name")
                parts.append(_Part("field", arg))
            elif namespace == "firehose" and arg == "error-output-type":
                parts.append(_Part("error", arg))
            elif namespace == "firehose" and arg == "random-string":
                parts.append(_Part("random", arg))
            else:
                raise ValueError(
                    f"unknown expression {match.group(0)} (timestamp, partitionKeyFromQuery, "
                    "partitionKeyFromLambda, firehose:error-output-type, firehose:random-string)"
                )
            pos = match.end()
        rest = text[pos:]
        if "!{" in rest:
            raise ValueError(f"unclosed or malformed expression in {text!r}")
        if rest:
            parts.append(_Part("text", rest))
        return parts

    def _format_time(self, unit_index: int) -> tuple[str, ...]:
        moment = datetime.fromtimestamp(unit_index * self._unit_us / 1_000_000, tz=UTC)
        out = []
        for part in self.parts:
            if part.kind == "time":
                text = moment.strftime(part.value)
                out.append(text.replace("\x1fms\x1f", f"{moment.microsecond // 1000:03d}"))
        return tuple(out)

    def render(
        self, time_us: int, data: dict[str, Any] | None = None, error_type: str | None = None
    ) -> str:
        """The key for a record at ``time_us`` (raises ``PartitionKeyMissing``)."""
        times: Iterator[str] = iter(())
        if self.uses_time:
            try:
                times = iter(self._time_text(time_us // self._unit_us))
            except (ValueError, OverflowError, OSError):
                # an event time outside years 1-9999 has no date to file it under: the record
                # goes to the error prefix like one missing its time
                raise PartitionKeyMissing(
                    f"the time {time_us} µs since 1970 is outside the years 1-9999"
                ) from None
        out: list[str] = []
        for part in self.parts:
            if part.kind == "text":
                out.append(part.value)
            elif part.kind == "time":
                out.append(next(times))
            elif part.kind == "field":
                value = lookup(data or {}, part.value)
                if value is None:
                    raise PartitionKeyMissing(f'the partition key field "{part.value}" is missing')
                try:
                    out.append(encode_value(value))
                except PartitionKeyMissing as exc:
                    raise PartitionKeyMissing(
                        f'the partition key field "{part.value}" is {exc}'
                    ) from None
            elif part.kind == "error":
                out.append(error_type or ERROR_PROCESSING)
            else:
                out.append(random_string())
        return "".join(out)


def random_string(length: int = 11) -> str:
    """Random lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


_NAME_TIME = KeyTemplate("!{timestamp:yyyy-MM-dd-HH-mm-ss}")


def object_name(stream: str, time_us: int, extension: str) -> str:
    """``<stream>-<yyyy>-<MM>-<dd>-<HH>-<mm>-<ss>-<uuid>.<ext>`` (Firehose's file name)."""
    return f"{encode_value(stream)}-{_NAME_TIME.render(time_us)}-{uuid.uuid4()}.{extension}"


LAKE_PARTITION = KeyTemplate("dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}")
"""The local lake's partition directories."""

__all__ = [
    "DEFAULT_TIME_PREFIX",
    "ERROR_FORMAT",
    "ERROR_PARTITIONING",
    "ERROR_PROCESSING",
    "LAKE_PARTITION",
    "KeyTemplate",
    "PartitionKeyMissing",
    "encode_value",
    "lookup",
    "object_name",
]
