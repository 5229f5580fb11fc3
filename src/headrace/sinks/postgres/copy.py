"""Batches as PostgreSQL ``COPY … FROM STDIN`` data, prepared a column at a time.

A batch is a list of ``(kind, values)`` columns, where ``kind`` is the column's PostgreSQL type
(as ``information_schema`` names it) or ``timestamp_us`` for a timestamptz given as µs since the
epoch. It is sent in one of two formats:

* **binary** (``FORMAT binary``), when every column's values have the Python type its column
  type takes exactly (``str`` for text, ``int`` for bigint, ``bool`` for boolean, anything for
  jsonb, …): ``binary_rows`` gives tuples for psycopg's ``write_row`` with ``set_types``, whose
  C dumpers write the network form, and PostgreSQL stores the values without parsing them.
  Measured on 200k impressions, this took half the client CPU of our own text encoding and
  about a third less server CPU than text.
* **text** otherwise (``text_rows``): one line per row, tab-separated, ``\\N`` for NULL,
  backslash, tab, newline and carriage return escaped. PostgreSQL parses each value with the
  type's input function, so ``"123"`` is a fine bigint, and a value the type refuses fails its
  row (the sink isolates it).

Why columns and not rows: a batch's values of one column nearly always share one Python type, so
one ``set(map(type, …))`` decides the format and conversion for the whole column.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

NULL = "\\N"
TIMESTAMP_US = "timestamp_us"
_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NONE = type(None)
_JSON_KINDS = frozenset({"jsonb", "json"})
_TEXT_KINDS = frozenset({"text", "character varying"})
_encode_json = msgspec.json.Encoder().encode

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)
_DATETIME_US = (-62_135_596_800_000_000, 253_402_300_799_999_999)  # years 1 to 9999
T = TypeVar("T")

Column = tuple[str, Sequence[Any]]
"""A column of a batch: its kind (see the module docstring) and its values."""


# -- text format ---------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.translate(_ESCAPES) if _SPECIAL.search(text) else text


def value_text(value: Any, json_column: bool = False) -> str:
    """One value in COPY text form; objects and arrays (and anything in a jsonb column) as
    JSON."""
    if value is None:
        return NULL
    if json_column or isinstance(value, dict | list):
        return _escape(_encode_json(value).decode())
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, int | float):
        return repr(value)
    return _escape(str(value))


def column_text(values: Sequence[Any], json_column: bool = False) -> list[str]:
    """The COPY text form of one column's values."""
    if json_column:
        return [value_text(v, True) for v in values]
    types = set(map(type, values))
    if types <= {str, _NONE}:
        texts: list[str] = list(values) if _NONE not in types else [
            NULL if v is None else v for v in values
        ]  # fmt: skip
        if _SPECIAL.search("".join(texts)):
            return [NULL if v is None else _escape(v) for v in values]
        return texts
    if types <= {int, _NONE}:
        if _NONE in types:
            return [NULL if v is None else str(v) for v in values]
        return list(map(str, values))
    return [value_text(v) for v in values]


def timestamp_text(us: int | None) -> str:
    """A time in µs since the epoch as timestamptz input (UTC); NULL outside the calendar."""
    if us is None or not _DATETIME_US[0] <= us <= _DATETIME_US[1]:
        return NULL
    seconds, micros = divmod(us, 1_000_000)
    try:
        day_time = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return NULL
    return f"{day_time}.{micros:06d}+00"


def cached(convert: Callable[[int], T]) -> Callable[[int | None], T | None]:
    """``convert`` remembering its last few hundred answers (the events of one request share
    a receive time); ``None`` stays ``None``."""
    memo: dict[int, T] = {}

    def lookup(value: int | None) -> T | None:
        if value is None:
            return None
        answer = memo.get(value)
        if answer is None:
            if len(memo) > 512:
                memo.clear()
            answer = memo[value] = convert(value)
        return answer

    return lookup


_timestamp_text_cached = cached(timestamp_text)


def _text_column(kind: str, values: Sequence[Any]) -> list[str]:
    if kind == TIMESTAMP_US:
        return [NULL if v is None else _timestamp_text_cached(v) or NULL for v in values]
    return column_text(values, kind in _JSON_KINDS)


# -- binary format -------------------------------------------------------------------------


def _in_range(values: Sequence[Any], bounds: tuple[int, int]) -> bool:
    numbers = [v for v in values if v is not None]
    return not numbers or (bounds[0] <= min(numbers) and max(numbers) <= bounds[1])


def binary_ok(kind: str, values: Sequence[Any]) -> bool:
    """Whether every value of the column has the exact Python type its column type takes."""
    if kind in _JSON_KINDS:
        return True
    types = set(map(type, values)) - {_NONE}
    if kind in _TEXT_KINDS:
        return types <= {str}
    if kind == "bigint":
        return types <= {int} and _in_range(values, _INT64)
    if kind == TIMESTAMP_US:
        return types <= {int} and _in_range(values, _DATETIME_US)
    if kind == "integer":
        return types <= {int} and _in_range(values, _INT32)
    if kind == "double precision":
        return types <= {float}
    if kind == "boolean":
        return types <= {bool}
    return False


def binary_types(columns: Sequence[Column]) -> list[str]:
    """The type names psycopg's ``set_types`` takes for ``columns``."""
    return ["timestamptz" if kind == TIMESTAMP_US else kind for kind, _ in columns]


def _datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _datetimes(values: Sequence[int | None]) -> list[datetime | None]:
    """µs times as ``datetime``: each distinct value converted once (a batch's events share
    a few receive times), the rest looked up in C."""
    known: dict[int | None, datetime | None] = {
        v: None if v is None else _datetime(v) for v in set(values)
    }
    return list(map(known.__getitem__, values))


def binary_rows(columns: Sequence[Column]) -> list[tuple[Any, ...]]:
    """Rows for ``write_row`` in binary format (times become ``datetime``)."""
    ready = [_datetimes(values) if kind == TIMESTAMP_US else values for kind, values in columns]
    return list(zip(*ready, strict=True))


def text_rows(columns: Sequence[Column]) -> list[str]:
    """One COPY text line (without its newline) per row."""
    texts = [_text_column(kind, values) for kind, values in columns]
    return list(map("\t".join, zip(*texts, strict=True)))


def text_payload(rows: Sequence[str]) -> bytes:
    """The bytes COPY reads for ``rows`` from ``text_rows``."""
    # surrogatepass: a lone surrogate reaches PostgreSQL, which refuses that one row
    return ("\n".join(rows) + "\n").encode("utf-8", "surrogatepass") if rows else b""
