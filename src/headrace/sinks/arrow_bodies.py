"""Stored requests straight to Arrow columns: the bodies parsed in C++, no Python dict per event.

The buffer keeps each request's body as it arrived (one JSON object, a JSON array of objects,
or NDJSON). A sink that stores columns (the lake, Parquet) and has no Python transform in
front can hand a batch of them to ``body_columns``: their events are joined into one JSON
document (``{"e":[event, event, …]}``; array bodies lose only their brackets, NDJSON lines
are joined with commas) and ``pyarrow.json`` parses it against the column types the sink has
settled on. The ids and receive times come from the requests, as ``expand_events`` derives them.

The answer is ``None`` whenever this path could store something the dict path would not: a
field without a settled column, a value of another type (Arrow refuses it while parsing), an
integer a double holds only approximately, a request whose ids came from outside. The caller
then takes the dict path, which decides those cases one event at a time. A test holds both
paths to the same rows.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from headrace.buffer.records import FORMAT_ARRAY, FORMAT_NDJSON, FORMAT_OBJECT, BufferedRequest
from headrace.ids import event_ids

_WHITESPACE = b" \t\r\n"
_FLOAT_EXACT = 2**53
"""Below this magnitude every integer is a double exactly, so Arrow's conversion of an integer
token in a float64 column is the dict path's ``float(value)``; past it the dict path may refuse."""


@dataclass
class BodyColumns:
    """The events of a batch of requests as columns, in request order."""

    table: Any
    """A ``pyarrow.Table`` of the fields asked for (a field no event holds is left out)."""
    ids: list[str]
    received_at_us: list[int]


def body_columns(
    requests: Sequence[BufferedRequest], fields: dict[str, Any], *, unexpected: str = "error"
) -> BodyColumns | None:
    """The events of ``requests`` as columns of ``fields`` (name: Arrow type), or ``None`` when
    they need the dict path (see the module docstring). ``unexpected``: ``"error"`` (a field
    outside ``fields`` means ``None``) or ``"ignore"`` (such fields are dropped)."""
    import pyarrow as pa
    import pyarrow.json as pj

    parts: list[bytes] = []
    newlines = False
    ids: list[str] = []
    times: list[int] = []
    for request in requests:
        if request.ids is not None or request.received_ats_us is not None or request.replay:
            return None  # ids from outside: the sink checks them one by one
        events = _events_text(request)
        if events is None:
            return None
        if events:
            parts.append(events)
            newlines = newlines or b"\n" in events
        ids += event_ids(int.from_bytes(request.base_id, "big"), request.count)
        times += [request.received_at_us] * request.count
    document = b'{"e":[' + b",".join(parts) + b"]}"
    schema = pa.schema([("e", pa.list_(pa.struct(list(fields.items()))))])
    try:
        parsed = pj.read_json(
            io.BytesIO(document),
            # one block holds the whole document (a block must hold a whole line); one thread,
            # as the delivery process shares the cores with ingest
            read_options=pj.ReadOptions(use_threads=False, block_size=len(document) + 64),
            parse_options=pj.ParseOptions(
                explicit_schema=schema,
                unexpected_field_behavior=unexpected,
                newlines_in_values=newlines,  # pretty-printed bodies (slower, so only then)
            ),
        )
    except pa.ArrowException:
        return None  # a value of another type, a field twice in one object, …: nothing is lost,
        # the dict path decides (and makes a dead letter of what it cannot decode either)
    events_array = parsed.column("e").combine_chunks().flatten()
    if len(events_array) != len(ids):
        return None  # the stored count disagrees with the body: let the dict path decide
    table = pa.Table.from_struct_array(events_array)
    kept = []
    for name in table.column_names:
        column = table.column(name)
        if not _exact(column):
            return None
        if column.null_count == len(column) and not _named_in(name, parts):
            continue  # no event holds the field: the dict path makes no column of it either
        kept.append(name)
    return BodyColumns(table.select(kept), ids, times)


def _events_text(request: BufferedRequest) -> bytes | None:
    """The request's events as the inside of a JSON array (``b""`` for none); ``None`` if the
    body is not what its format says."""
    body = request.body
    if request.fmt == FORMAT_OBJECT:
        return body.strip(_WHITESPACE)
    if request.fmt == FORMAT_ARRAY:
        text = body.strip(_WHITESPACE)
        if not (text.startswith(b"[") and text.endswith(b"]")):
            return None
        return text[1:-1].strip(_WHITESPACE)
    if request.fmt == FORMAT_NDJSON:
        # split exactly as ingest did (on "\n" only); a line's "\r" is whitespace inside the array
        return b",".join(line for line in body.split(b"\n") if line.strip(_WHITESPACE))
    return None


def _exact(column: Any) -> bool:
    """Whether Arrow stored ``column``'s values as the dict path would: only a float64 column
    can differ, where an integer token past 2**53 becomes the nearest double."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.type != pa.float64() or column.null_count == len(column):
        return True
    largest = pc.max(pc.abs(column)).as_py()
    return largest is None or largest < _FLOAT_EXACT


def _named_in(name: str, parts: list[bytes]) -> bool:
    """Whether some event holds the key ``name`` (with any value, null too). Arrow fills an
    absent field with nulls, so for an all-null column the bodies are asked; a key written with
    escapes the sender did not need is not recognised (the column is then left out: values are
    the same, nulls either way)."""
    pattern = re.compile(rb"(?<!\\)" + re.escape(msgspec.json.encode(name)) + rb"\s*:")
    return any(pattern.search(part) for part in parts)


__all__ = ["BodyColumns", "body_columns"]
