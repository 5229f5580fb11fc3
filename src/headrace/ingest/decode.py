"""Turning a request body into events, within limits, without trusting the sender.

- Compression: gzip and deflate are recognised by ``Content-Encoding`` *or* by their magic bytes
  (some senders gzip without saying so). Decompression is incremental and stops at
  ``max_decompressed_bytes``, so a gzip bomb never grows memory past the cap.
- Formats: one JSON object, a JSON array of objects, or NDJSON; ``auto`` tells them apart.
- Depth and numbers: a cheap scan proves most bodies flat and their integers short; only bodies
  that might be deep or hold huge integers are walked.
The body is stored as it arrived (decompressed, leading whitespace and BOM removed); this module
only checks it.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from headrace.buffer.records import FORMAT_ARRAY, FORMAT_NDJSON, FORMAT_OBJECT
from headrace.config.base import Limits
from headrace.errors import RequestRejected

_decoder = msgspec.json.Decoder()


class _AnyObject(msgspec.Struct):
    """Matches any JSON object and skips its fields: checks structure without building values."""


_skim_array = msgspec.json.Decoder(list[_AnyObject])
_skim_object = msgspec.json.Decoder(_AnyObject)
_BYTE_POSITION = re.compile(r"\(byte (\d+)\)")
# Digits become "0" and "E" becomes "e", so a few substring searches find numbers that might be
# out of range: integers of 19+ digits, floats with 3-digit exponents.
_NUMBER_SHAPES = bytes(0x30 if 0x30 <= i <= 0x39 else 0x65 if i == 0x45 else i for i in range(256))
_LONG_NUMBER = b"0" * 19  # 19 digits: the shortest run that may leave the 64-bit range
_BIG_EXPONENTS = (b"e000", b"e+000", b"e-000")
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
_CHUNK = 64 * 1024
_WHITESPACE = b" \t\r\n"


def _is_gzip(body: bytes) -> bool:
    return body[:2] == b"\x1f\x8b"


def _is_zlib(body: bytes) -> bool:
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def _inflate(body: bytes, wbits: int, cap: int, what: str) -> bytes:
    out: list[bytes] = []
    produced = 0
    data = body
    while data:
        inflater = zlib.decompressobj(wbits)
        pending = data
        while True:  # zlib may hold output after the last input byte: drain until it stops
            chunk = inflater.decompress(pending, _CHUNK)
            produced += len(chunk)
            if produced > cap:
                raise RequestRejected(
                    413,
                    "decompressed_too_large",
                    f"the body is larger than {cap} bytes once decompressed",
                    limit=cap,
                )
            out.append(chunk)
            pending = inflater.unconsumed_tail
            if inflater.eof or (not chunk and not pending):
                break
        if not inflater.eof:
            raise RequestRejected(400, "decode_error", f"the {what} body is cut short")
        # gzip allows several members back to back; anything else after the end is an error
        data = inflater.unused_data
        if data and (wbits < 16 or not _is_gzip(data)):
            if data.strip(b"\x00"):
                raise RequestRejected(
                    400, "decode_error", f"bytes after the end of the {what} body"
                )
            break
    return b"".join(out)


def decompress(body: bytes, content_encoding: str | None, limits: Limits) -> bytes:
    """The body decompressed, whatever the sender said about it."""
    encoding = (content_encoding or "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise RequestRejected(
            415,
            "unsupported_encoding",
            f'Content-Encoding "{encoding}" is not supported (use gzip, deflate or none)',
        )
    cap = limits.max_decompressed_bytes
    try:
        if encoding in ("gzip", "x-gzip") or _is_gzip(body):
            return _inflate(body, 16 + zlib.MAX_WBITS, cap, "gzip")
        if encoding == "deflate" or _is_zlib(body):
            try:
                return _inflate(body, zlib.MAX_WBITS, cap, "deflate")
            except zlib.error:
                if encoding != "deflate":
                    raise
                return _inflate(body, -zlib.MAX_WBITS, cap, "deflate")  # raw deflate, no header
    except zlib.error as exc:
        raise RequestRejected(
            400, "decode_error", f"the body cannot be decompressed: {exc}"
        ) from exc
    if len(body) > cap:
        raise RequestRejected(413, "decompressed_too_large", f"the body is larger than {cap} bytes")
    return body


@dataclass(frozen=True)
class Decoded:
    """A checked body: its format, how many events, the bytes to store, and the decoded events
    when they were asked for (``need_values``) or had to be built to check them."""

    fmt: int
    count: int
    body: bytes
    events: list[dict[str, Any]] | None


def _json_error(
    exc: Exception, data: bytes, *, line: int | None = None, offset: int = 0
) -> RequestRejected:
    """A 400 for ``data`` that does not decode; ``offset`` is where ``data`` starts in the body."""
    text = str(exc)
    detail: dict[str, Any] = {} if line is None else {"line": line}
    if isinstance(exc, UnicodeDecodeError):
        detail["position"] = offset + exc.start
        return RequestRejected(400, "invalid_json", "the body is not valid UTF-8", **detail)
    if isinstance(exc, msgspec.ValidationError):
        return RequestRejected(400, "number_out_of_range", f"a number is out of range: {text}")
    if isinstance(exc, RecursionError):
        return RequestRejected(400, "too_deep", "the JSON nests too deeply")
    match = _BYTE_POSITION.search(text)
    if match:
        position = int(match.group(1))
        if "trailing characters" in text:
            position -= 1  # msgspec names the byte after the offending one
        detail["position"] = offset + position
    elif "truncated" in text:
        detail["position"] = offset + len(data)
    if line is not None:
        text = f"line {line}: {text}"
    return RequestRejected(400, "invalid_json", text, **detail)


_JSON_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError)


def _decode_json(data: bytes, *, line: int, offset: int) -> Any:
    try:
        return _decoder.decode(data)
    except _JSON_ERRORS as exc:
        raise _json_error(exc, data, line=line, offset=offset) from exc


def _check_shape(value: Any, max_depth: int, depth: int = 1) -> None:
    items = value.values() if type(value) is dict else value
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            if depth + 1 > max_depth:
                raise RequestRejected(
                    400,
                    "too_deep",
                    f"an event nests deeper than {max_depth} levels",
                    limit=max_depth,
                )
            _check_shape(item, max_depth, depth + 1)
        elif kind is int and not INT_MIN <= item <= INT_MAX:
            raise RequestRejected(
                400,
                "number_out_of_range",
                f"the integer {str(item)[:32]}… is out of the 64-bit range",
            )


def _sniff(body: bytes, declared: str, content_type: str | None) -> str:
    if declared != "auto":
        return declared
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in (
        "application/x-ndjson",
        "application/jsonl",
        "application/ndjson",
        "application/x-jsonlines",
        "application/jsonlines",
    ):
        return "ndjson"
    return "json"


class Skimmer(Protocol):
    """Decoders that check a body's structure without building its values (see ``_skim``)."""

    array: msgspec.json.Decoder[Any]
    object: msgspec.json.Decoder[Any]


class _AnyObjects:
    array = _skim_array
    object = _skim_object


def _skim(body: bytes, limits: Limits, skimmer: Skimmer) -> Decoded | None:
    """Check a JSON body without building its values; ``None`` when the full path must decide
    (an error to describe, a body that may be deep or hold out-of-range numbers, NDJSON, or a
    body a schema's skimmer does not accept)."""
    try:
        body.decode("utf-8")  # the skimming decoder does not check skipped strings
        if body[:1] == b"[":
            fmt, count = FORMAT_ARRAY, len(skimmer.array.decode(body))
        else:
            skimmer.object.decode(body)
            fmt, count = FORMAT_OBJECT, 1
    except (ValueError, msgspec.MsgspecError, RecursionError):
        return None
    if count > limits.max_events:
        return None
    containers = body.count(b"{") + body.count(b"[")
    if containers > count + (1 if fmt == FORMAT_ARRAY else 0):
        return None  # nested: the depth is checked on decoded values
    shapes = body.translate(_NUMBER_SHAPES)
    if shapes.find(_LONG_NUMBER) >= 0 or any(shapes.find(e) >= 0 for e in _BIG_EXPONENTS):
        return None
    return Decoded(fmt, count, body, None)


def parse_events(
    raw: bytes,
    *,
    declared_format: str,
    content_type: str | None,
    limits: Limits,
    need_values: bool = False,
    skimmer: Skimmer | None = None,
) -> Decoded:
    """Check ``raw`` (and decode its events if ``need_values``), or raise ``RequestRejected``
    saying why. With a ``skimmer`` (a schema's fast form), a skimmed body has also been checked
    against the schema; one it refuses is decoded in full for the caller to check."""
    body = raw.lstrip(_WHITESPACE)
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:].lstrip(_WHITESPACE)
    # Positions and line numbers in errors count what was stripped, as the sender sees them.
    lead = len(raw) - len(body)
    if not body:
        raise RequestRejected(400, "empty_body", "the body holds no events")
    fmt_name = _sniff(body, declared_format, content_type)
    if fmt_name == "json" and not need_values and body[:1] in (b"[", b"{"):
        skimmed = _skim(body, limits, skimmer or _AnyObjects)
        if skimmed is not None:
            return skimmed
    found = _json_events(body, lead, declared_format == "auto") if fmt_name == "json" else None
    if found is None:
        fmt, events = FORMAT_NDJSON, _ndjson_events(body, lead, raw[:lead].count(b"\n"))
    else:
        fmt, events = found
    _check_events(body, fmt, events, limits)
    return Decoded(fmt, len(events), body, events)


def _json_events(body: bytes, lead: int, auto: bool) -> tuple[int, list[Any]] | None:
    """The events of a JSON body (an object, or an array of objects); ``None`` when an ``auto``
    body turns out to be NDJSON (an object followed by more)."""
    try:
        value = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        if auto and "trailing characters" in str(exc) and body[:1] == b"{":
            return None
        raise _json_error(exc, body, offset=lead) from exc
    except _JSON_ERRORS as exc:
        raise _json_error(exc, body, offset=lead) from exc
    if type(value) is dict:
        return FORMAT_OBJECT, [value]
    if type(value) is list:
        for index, item in enumerate(value):
            if type(item) is not dict:
                raise RequestRejected(
                    400,
                    "not_an_object",
                    f"item {index} of the array is not a JSON object",
                    index=index,
                )
        return FORMAT_ARRAY, value
    raise RequestRejected(
        400, "not_an_object", "the body must be a JSON object or an array of objects"
    )


def _ndjson_events(body: bytes, lead: int, lead_lines: int) -> list[Any]:
    """The events of an NDJSON body, one object a line (blank lines skipped)."""
    events = []
    offset = lead
    for number, line in enumerate(body.split(b"\n"), start=lead_lines + 1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip(_WHITESPACE):
            continue
        item = _decode_json(line, line=number, offset=start)
        if type(item) is not dict:
            raise RequestRejected(
                400, "not_an_object", f"line {number} is not a JSON object", line=number
            )
        events.append(item)
    return events


def _check_events(body: bytes, fmt: int, events: list[Any], limits: Limits) -> None:
    """Refuse too many events, and events too deep or with integers out of range (walked only
    when a cheap scan of the body cannot rule them out)."""
    if len(events) > limits.max_events:
        raise RequestRejected(
            413,
            "too_many_events",
            f"the request carries {len(events)} events; at most {limits.max_events} are allowed",
            limit=limits.max_events,
        )
    containers = body.count(b"{") + body.count(b"[")
    flat = containers <= len(events) + (1 if fmt == FORMAT_ARRAY else 0)
    if not flat or body.translate(_NUMBER_SHAPES).find(_LONG_NUMBER) >= 0:
        for event in events:
            _check_shape(event, limits.max_depth)
