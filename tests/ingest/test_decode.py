"""Tests for request-body decoding: ``decompress`` and ``parse_events``."""

from __future__ import annotations

import gzip
import json
import random
import tracemalloc
import zlib
from typing import Any

import pytest

from headrace.buffer.records import FORMAT_ARRAY, FORMAT_NDJSON, FORMAT_OBJECT
from headrace.config.base import Limits
from headrace.errors import RequestRejected
from headrace.ingest.decode import Decoded, decompress, parse_events

DEFAULTS = Limits()
MiB = 1024**2
PAYLOAD = b'{"event":"click","user":42,"tags":["a","b"]}\n' * 50


# --- helpers ---------------------------------------------------------------------------------


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    return zlib_stream(data, 16 + zlib.MAX_WBITS, level)


def zlib_bytes(data: bytes, level: int = 6) -> bytes:
    return zlib_stream(data, zlib.MAX_WBITS, level)


def raw_deflate_bytes(data: bytes, level: int = 6) -> bytes:
    return zlib_stream(data, -zlib.MAX_WBITS, level)


def zlib_stream(data: bytes, wbits: int, level: int = 6) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


def zeros_bomb(total: int, wbits: int, chunk: int = MiB) -> bytes:
    """``total`` zero bytes compressed, built chunk by chunk so the test never holds them all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(chunk)
    parts = [compressor.compress(zeros) for _ in range(total // chunk)]
    parts.append(compressor.compress(bytes(total % chunk)))
    parts.append(compressor.flush())
    return b"".join(parts)


def rejected(body: bytes, encoding: str | None, limits: Limits = DEFAULTS) -> RequestRejected:
    """The ``RequestRejected`` that ``decompress`` raises for ``body``."""
    with pytest.raises(RequestRejected) as info:
        decompress(body, encoding, limits)
    return info.value


def parse(
    raw: bytes,
    *,
    fmt: str = "auto",
    content_type: str | None = "application/json",
    limits: Limits = DEFAULTS,
) -> Decoded:
    """Parse on both paths, skimming (values not built) and decoding; they must agree."""

    def run(need_values: bool) -> Decoded | RequestRejected:
        try:
            return parse_events(
                raw, declared_format=fmt, content_type=content_type, limits=limits,
                need_values=need_values,
            )  # fmt: skip
        except RequestRejected as exc:
            return exc

    skimmed, decoded = run(False), run(True)
    if isinstance(decoded, RequestRejected):
        assert isinstance(skimmed, RequestRejected), "skimming accepted what decoding refuses"
        assert (skimmed.status, skimmed.reason, skimmed.detail) == (
            decoded.status, decoded.reason, decoded.detail,
        )  # fmt: skip
        raise decoded
    assert not isinstance(skimmed, RequestRejected), f"skimming refused: {skimmed}"
    assert (skimmed.fmt, skimmed.count, skimmed.body) == (decoded.fmt, decoded.count, decoded.body)
    return decoded


def refused(
    raw: bytes,
    *,
    fmt: str = "auto",
    content_type: str | None = "application/json",
    limits: Limits = DEFAULTS,
) -> RequestRejected:
    """The ``RequestRejected`` that ``parse_events`` raises for ``raw``."""
    with pytest.raises(RequestRejected) as info:
        parse(raw, fmt=fmt, content_type=content_type, limits=limits)
    return info.value


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """An object ``depth`` levels deep: ``nested(1) == {"v": 1}``."""
    value: Any = leaf
    for _ in range(depth):
        value = {"v": value}
    assert isinstance(value, dict)
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- decompress: what is recognised ----------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
def test_uncompressed_body_is_returned_unchanged(encoding: str | None) -> None:
    assert decompress(PAYLOAD, encoding, DEFAULTS) == PAYLOAD


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", " gzip "])
def test_gzip_body_is_decompressed_when_content_encoding_says_so(encoding: str) -> None:
    assert decompress(gzip_bytes(PAYLOAD), encoding, DEFAULTS) == PAYLOAD


def test_gzip_module_output_is_decompressed() -> None:
    assert decompress(gzip.compress(PAYLOAD, mtime=0), "gzip", DEFAULTS) == PAYLOAD


@pytest.mark.parametrize("encoding", [None, "", "identity", "deflate"])
def test_gzip_body_is_detected_by_magic_bytes_whatever_the_header_says(
    encoding: str | None,
) -> None:
    assert decompress(gzip_bytes(PAYLOAD), encoding, DEFAULTS) == PAYLOAD


@pytest.mark.parametrize("level", [1, 6, 9])
def test_zlib_wrapped_deflate_is_decompressed_when_content_encoding_says_so(level: int) -> None:
    assert decompress(zlib_bytes(PAYLOAD, level), "deflate", DEFAULTS) == PAYLOAD


@pytest.mark.parametrize("level", [1, 6, 9])
@pytest.mark.parametrize("encoding", [None, "identity"])
def test_zlib_wrapped_deflate_is_detected_by_its_header(level: int, encoding: str | None) -> None:
    assert decompress(zlib_bytes(PAYLOAD, level), encoding, DEFAULTS) == PAYLOAD


@pytest.mark.parametrize("encoding", ["deflate", "Deflate"])
def test_raw_deflate_is_decompressed_when_content_encoding_says_deflate(encoding: str) -> None:
    assert decompress(raw_deflate_bytes(PAYLOAD), encoding, DEFAULTS) == PAYLOAD


def test_raw_deflate_without_content_encoding_is_not_guessed() -> None:
    body = raw_deflate_bytes(PAYLOAD)
    assert body[:2] != b"\x1f\x8b"
    assert decompress(body, None, DEFAULTS) == body


def test_raw_deflate_just_past_a_64_kib_chunk_boundary_is_decompressed() -> None:
    failures = []
    for size in range(65_537, 65_800):
        data = bytes(size)
        try:
            assert decompress(raw_deflate_bytes(data, 9), "deflate", DEFAULTS) == data
        except RequestRejected as exc:
            failures.append((size, exc.message))
    assert failures == []


@pytest.mark.parametrize("size", [65_535, 65_536, 65_537, 131_072, 131_073, 300_001])
@pytest.mark.parametrize("kind", ["gzip", "zlib"])
def test_wrapped_streams_around_chunk_boundaries_are_decompressed(size: int, kind: str) -> None:
    data = bytes(size)
    body = gzip_bytes(data, 9) if kind == "gzip" else zlib_bytes(data, 9)
    assert decompress(body, None, DEFAULTS) == data


def test_large_incompressible_gzip_body_survives_the_chunked_inflate() -> None:
    data = random.Random(7).randbytes(300_000)  # many 64 KiB output chunks, stored blocks
    assert decompress(gzip_bytes(data), "gzip", DEFAULTS) == data


def test_large_compressible_gzip_body_survives_the_chunked_inflate() -> None:
    data = b"".join(b'{"i":%d,"page":"/home"}\n' % i for i in range(40_000))
    assert len(data) > 16 * 64 * 1024
    assert decompress(gzip_bytes(data), None, DEFAULTS) == data


def test_empty_body_with_gzip_encoding_is_empty() -> None:
    assert decompress(b"", "gzip", DEFAULTS) == b""


@pytest.mark.parametrize("encoding", ["br", "compress", "zstd", "gzip, br", "gzip, gzip", "*"])
def test_unsupported_encoding_is_refused_with_415(encoding: str) -> None:
    exc = rejected(gzip_bytes(PAYLOAD), encoding)
    assert exc.status == 415
    assert exc.reason == "unsupported_encoding"
    assert encoding.strip().lower() in exc.message


# --- decompress: concatenated members and damaged bodies -------------------------------------


def test_concatenated_gzip_members_are_all_decompressed() -> None:
    parts = [b'{"n":1}\n', b'{"n":2}\n', b'{"n":3}\n']
    body = b"".join(gzip_bytes(part) for part in parts)
    assert decompress(body, "gzip", DEFAULTS) == b"".join(parts)
    assert decompress(body, None, DEFAULTS) == b"".join(parts)


def test_concatenated_gzip_members_count_towards_one_cap() -> None:
    limits = Limits(max_decompressed_bytes=1000)
    body = gzip_bytes(bytes(600)) + gzip_bytes(bytes(600))
    exc = rejected(body, "gzip", limits)
    assert (exc.status, exc.reason) == (413, "decompressed_too_large")


def test_zero_padding_after_a_gzip_member_is_tolerated() -> None:
    assert decompress(gzip_bytes(PAYLOAD) + bytes(16), "gzip", DEFAULTS) == PAYLOAD


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gzip_bytes(PAYLOAD) + b"garbage", "gzip"),
        (zlib_bytes(PAYLOAD) + b"garbage", "deflate"),
        (zlib_bytes(PAYLOAD) + zlib_bytes(PAYLOAD), "deflate"),
    ],
)
def test_bytes_after_the_end_of_the_compressed_body_are_refused(body: bytes, encoding: str) -> None:
    exc = rejected(body, encoding)
    assert (exc.status, exc.reason) == (400, "decode_error")
    assert "after the end" in exc.message


def _corrupt(body: bytes, at: int) -> bytes:
    damaged = bytearray(body)
    damaged[at] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: _corrupt(b, 2), id="method byte"),
        pytest.param(lambda b: _corrupt(b, len(b) // 2), id="deflate data"),
        pytest.param(lambda b: _corrupt(b, len(b) - 6), id="crc32"),
        pytest.param(lambda b: _corrupt(b, len(b) - 2), id="length"),
        pytest.param(lambda b: b[:10] + b"\xff" * 40, id="garbage after header"),
    ],
)
def test_corrupt_gzip_is_a_400_decode_error(damage: Any) -> None:
    exc = rejected(damage(gzip_bytes(PAYLOAD)), "gzip")
    assert (exc.status, exc.reason) == (400, "decode_error")


@pytest.mark.parametrize("keep", [3, 10, 20, -9, -4, -1])
def test_truncated_gzip_is_a_400_decode_error(keep: int) -> None:
    body = gzip_bytes(PAYLOAD)
    exc = rejected(body[:keep], "gzip")
    assert (exc.status, exc.reason) == (400, "decode_error")


def test_truncated_second_gzip_member_is_a_400_decode_error() -> None:
    second = gzip_bytes(PAYLOAD)
    exc = rejected(gzip_bytes(PAYLOAD) + second[: len(second) // 2], None)
    assert (exc.status, exc.reason) == (400, "decode_error")


def test_truncated_zlib_body_is_a_400_decode_error() -> None:
    body = zlib_bytes(PAYLOAD)
    exc = rejected(body[: len(body) // 2], "deflate")
    assert (exc.status, exc.reason) == (400, "decode_error")


def test_content_encoding_gzip_on_a_plain_body_is_a_400_decode_error() -> None:
    exc = rejected(PAYLOAD, "gzip")
    assert (exc.status, exc.reason) == (400, "decode_error")


def test_content_encoding_deflate_on_garbage_is_a_400_decode_error() -> None:
    exc = rejected(b"\xff" * 64, "deflate")
    assert (exc.status, exc.reason) == (400, "decode_error")


# --- decompress: size caps and gzip bombs ----------------------------------------------------


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """200 MB of zeros, gzip-compressed to about 200 KB."""
    return zeros_bomb(200 * 1000**2, 16 + zlib.MAX_WBITS)


@pytest.fixture(scope="module")
def deflate_bomb() -> bytes:
    """200 MB of zeros, zlib-wrapped deflate."""
    return zeros_bomb(200 * 1000**2, zlib.MAX_WBITS)


def _peak_while_refused(body: bytes, encoding: str | None, limits: Limits) -> int:
    """Peak traced memory while ``decompress`` refuses ``body`` as too large."""
    already_tracing = tracemalloc.is_tracing()  # e.g. python -X tracemalloc
    if not already_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        with pytest.raises(RequestRejected) as info:
            decompress(body, encoding, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not already_tracing:
            tracemalloc.stop()
    assert (info.value.status, info.value.reason) == (413, "decompressed_too_large")
    assert info.value.detail == {"limit": limits.max_decompressed_bytes}
    return peak - before


@pytest.mark.parametrize("encoding", ["gzip", None])
def test_gzip_bomb_is_refused_without_memory_growing_past_the_cap(
    gzip_bomb: bytes, encoding: str | None
) -> None:
    assert len(gzip_bomb) < 1 * MiB
    limits = Limits(max_decompressed_bytes="1MiB")
    peak = _peak_while_refused(gzip_bomb, encoding, limits)
    assert peak < limits.max_decompressed_bytes + 2 * MiB, f"peak {peak} bytes"


@pytest.mark.parametrize("encoding", ["deflate", None])
def test_deflate_bomb_is_refused_without_memory_growing_past_the_cap(
    deflate_bomb: bytes, encoding: str | None
) -> None:
    limits = Limits(max_decompressed_bytes="1MiB")
    peak = _peak_while_refused(deflate_bomb, encoding, limits)
    assert peak < limits.max_decompressed_bytes + 2 * MiB, f"peak {peak} bytes"


def test_gzip_bomb_is_refused_under_the_default_cap_too(gzip_bomb: bytes) -> None:
    exc = rejected(gzip_bomb, "gzip")
    assert (exc.status, exc.reason) == (413, "decompressed_too_large")
    assert exc.detail["limit"] == DEFAULTS.max_decompressed_bytes


@pytest.mark.parametrize("make", [gzip_bytes, zlib_bytes])
def test_decompressed_body_exactly_at_the_cap_is_accepted(make: Any) -> None:
    limits = Limits(max_decompressed_bytes=100_000)
    data = bytes(100_000)
    assert decompress(make(data), None, limits) == data
    exc = rejected(make(data + b"\0"), None, limits)
    assert (exc.status, exc.reason) == (413, "decompressed_too_large")


def test_uncompressed_body_over_the_cap_is_refused_with_413() -> None:
    limits = Limits(max_decompressed_bytes=1000)
    assert decompress(b"x" * 1000, None, limits) == b"x" * 1000
    exc = rejected(b"x" * 1001, None, limits)
    assert (exc.status, exc.reason) == (413, "decompressed_too_large")


# --- parse_events: formats -------------------------------------------------------------------


def test_json_object_is_one_event() -> None:
    raw = b'{"event":"click","n":1}'
    decoded = parse(raw)
    assert decoded.fmt == FORMAT_OBJECT
    assert decoded.events == [{"event": "click", "n": 1}]
    assert decoded.body == raw


def test_json_array_of_objects_is_one_event_per_item() -> None:
    decoded = parse(b'[{"n":1},{"n":2},{"n":3}]')
    assert decoded.fmt == FORMAT_ARRAY
    assert decoded.events == [{"n": 1}, {"n": 2}, {"n": 3}]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-ndjson",
        "application/x-ndjson; charset=utf-8",
        "Application/X-NDJSON",
        "application/ndjson",
        "application/jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
    ],
)
def test_ndjson_is_recognised_by_content_type(content_type: str) -> None:
    decoded = parse(b'{"n":1}\n{"n":2}\n', content_type=content_type)
    assert decoded.fmt == FORMAT_NDJSON
    assert decoded.events == [{"n": 1}, {"n": 2}]


def test_single_line_with_ndjson_content_type_is_ndjson() -> None:
    decoded = parse(b'{"n":1}', content_type="application/x-ndjson")
    assert decoded.fmt == FORMAT_NDJSON
    assert decoded.events == [{"n": 1}]


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_auto_sniffs_ndjson_when_several_objects_are_on_lines(content_type: str | None) -> None:
    decoded = parse(b'{"n":1}\n{"n":2}\n{"n":3}', content_type=content_type)
    assert decoded.fmt == FORMAT_NDJSON
    assert decoded.events == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_declared_ndjson_format_wins_over_content_type() -> None:
    decoded = parse(b'{"n":1}\n{"n":2}', fmt="ndjson", content_type="application/json")
    assert decoded.fmt == FORMAT_NDJSON
    assert len(decoded.events) == 2


def test_declared_json_format_does_not_sniff_ndjson() -> None:
    exc = refused(b'{"n":1}\n{"n":2}', fmt="json", content_type="application/x-ndjson")
    assert (exc.status, exc.reason) == (400, "invalid_json")


def test_ndjson_blank_and_whitespace_lines_are_ignored() -> None:
    raw = b'{"n":1}\n\n   \n\t\n{"n":2}\r\n\r\n{"n":3}\n\n'
    decoded = parse(raw, content_type="application/x-ndjson")
    assert decoded.fmt == FORMAT_NDJSON
    assert decoded.events == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_sniffed_ndjson_ignores_blank_lines_too() -> None:
    decoded = parse(b'{"n":1}\n\n\n{"n":2}\n')
    assert decoded.fmt == FORMAT_NDJSON
    assert decoded.events == [{"n": 1}, {"n": 2}]


def test_crlf_ndjson_is_accepted() -> None:
    decoded = parse(b'{"n":1}\r\n{"n":2}\r\n', content_type="application/x-ndjson")
    assert decoded.events == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize(
    "raw",
    [
        b'\xef\xbb\xbf{"n":1}',
        b'\xef\xbb\xbf  \n{"n":1}',
        b'  \r\n\t\xef\xbb\xbf{"n":1}',
        b' \n {"n":1} \n ',
    ],
)
def test_byte_order_mark_and_surrounding_whitespace_are_tolerated(raw: bytes) -> None:
    decoded = parse(raw)
    assert decoded.fmt == FORMAT_OBJECT
    assert decoded.events == [{"n": 1}]


def test_byte_order_mark_is_tolerated_in_ndjson() -> None:
    decoded = parse(b'\xef\xbb\xbf{"n":1}\n{"n":2}\n', content_type="application/x-ndjson")
    assert decoded.events == [{"n": 1}, {"n": 2}]


def test_unicode_content_is_decoded() -> None:
    decoded = parse('{"name":"Zoë","emoji":"🚣"}'.encode())
    assert decoded.events == [{"name": "Zoë", "emoji": "🚣"}]


# --- parse_events: shapes that are not events ------------------------------------------------


@pytest.mark.parametrize(("raw", "index"), [(b"[1]", 0), (b'[{"n":1},"x"]', 1), (b"[{},{},[]]", 2)])
def test_array_item_that_is_not_an_object_is_refused_with_its_index(raw: bytes, index: int) -> None:
    exc = refused(raw)
    assert (exc.status, exc.reason) == (400, "not_an_object")
    assert exc.detail["index"] == index


@pytest.mark.parametrize("raw", [b"1", b'"text"', b"true", b"null", b"-2.5", b"  42  "])
def test_scalar_body_is_refused_with_400(raw: bytes) -> None:
    exc = refused(raw)
    assert (exc.status, exc.reason) == (400, "not_an_object")


def test_ndjson_line_that_is_not_an_object_is_refused_with_its_line() -> None:
    exc = refused(b'{"n":1}\n{"n":2}\n[1,2]\n', content_type="application/x-ndjson")
    assert (exc.status, exc.reason) == (400, "not_an_object")
    assert exc.detail["line"] == 3


def test_sniffed_ndjson_line_that_is_not_an_object_is_refused_with_its_line() -> None:
    exc = refused(b'{"n":1}\n"two"\n')
    assert (exc.status, exc.reason) == (400, "not_an_object")
    assert exc.detail["line"] == 2


@pytest.mark.parametrize(
    "raw", [b"", b" ", b"\n\n", b" \t\r\n ", b"\xef\xbb\xbf", b"\xef\xbb\xbf \n"]
)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
def test_empty_or_whitespace_body_is_refused(raw: bytes, content_type: str) -> None:
    exc = refused(raw, content_type=content_type)
    assert (exc.status, exc.reason) == (400, "empty_body")


# --- parse_events: invalid JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        (b'{"n":1,}', 7),
        (b'{"n":}', 5),
        (b'[{"n":1},{"n":2]', 15),
        (b"{'n':1}", 1),
        (b'{"n":@}', 5),
        (b'{"n":"\\x"}', 8),
    ],
)
def test_invalid_json_is_refused_with_the_byte_offset(raw: bytes, position: int) -> None:
    exc = refused(raw)
    assert (exc.status, exc.reason) == (400, "invalid_json")
    assert exc.detail["position"] == position


@pytest.mark.parametrize("raw", [b'{"n":1', b"[", b'{"n":"abc'])
def test_truncated_json_is_invalid_json(raw: bytes) -> None:
    exc = refused(raw, fmt="json")
    assert (exc.status, exc.reason) == (400, "invalid_json")


def test_truncated_json_reports_the_position_where_it_ends() -> None:
    exc = refused(b'{"n":1')
    assert exc.detail.get("position") == 6


@pytest.mark.parametrize(("raw", "position"), [(b'{"a":1}x', 7), (b'{"a":"b"} x', 10)])
def test_trailing_characters_position_is_the_offending_byte(raw: bytes, position: int) -> None:
    exc = refused(raw, fmt="json")
    assert (exc.status, exc.reason) == (400, "invalid_json")
    assert exc.detail["position"] == position


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"n":"\xff\xfe"}', "application/json"),
        (b'{"\xff":1}', "application/json"),
        (b'[{"n":"caf\xe9"}]', "application/json"),
        (b'{"n":1}\n{"n":"\xc3"}\n', "application/x-ndjson"),
    ],
)
def test_invalid_utf8_is_a_400_not_a_crash(raw: bytes, content_type: str) -> None:
    exc = refused(raw, content_type=content_type)
    assert (exc.status, exc.reason) == (400, "invalid_json")


def test_invalid_json_position_counts_leading_whitespace() -> None:
    exc = refused(b'  \n{"n":}')
    assert exc.detail["position"] == 8


def test_invalid_ndjson_line_is_refused_with_its_line_number() -> None:
    raw = b'{"n":1}\n{"n":2}\n{"n":\n{"n":4}\n'
    exc = refused(raw, content_type="application/x-ndjson")
    assert (exc.status, exc.reason) == (400, "invalid_json")
    assert exc.detail["line"] == 3
    assert "line 3" in exc.message


def test_invalid_ndjson_line_number_counts_blank_lines() -> None:
    exc = refused(b'{"n":1}\n\n\n{bad}\n', content_type="application/x-ndjson")
    assert exc.detail["line"] == 4


def test_invalid_sniffed_ndjson_line_is_refused_with_its_line_number() -> None:
    exc = refused(b'{"n":1}\n{"n":2}\n{oops\n')
    assert (exc.status, exc.reason) == (400, "invalid_json")
    assert exc.detail["line"] == 3


def test_invalid_ndjson_line_number_counts_leading_blank_lines() -> None:
    exc = refused(b'\n\n{"n":1}\n{bad}\n', content_type="application/x-ndjson")
    assert exc.detail["line"] == 4


def test_array_followed_by_more_json_is_not_sniffed_as_ndjson() -> None:
    exc = refused(b'[{"n":1}]\n[{"n":2}]')
    assert (exc.status, exc.reason) == (400, "invalid_json")


# --- parse_events: event counts --------------------------------------------------------------


def test_events_up_to_the_limit_are_accepted() -> None:
    limits = Limits(max_events=3)
    assert len(parse(b"[{},{},{}]", limits=limits).events) == 3
    ndjson = b"{}\n{}\n{}\n"
    assert len(parse(ndjson, content_type="application/x-ndjson", limits=limits).events) == 3


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"[{},{},{},{}]", "application/json"),
        (b"{}\n{}\n{}\n{}\n", "application/x-ndjson"),
        (b'{"a":1}\n{"a":2}\n{"a":3}\n{"a":4}', "application/json"),
    ],
)
def test_too_many_events_are_refused_with_413(raw: bytes, content_type: str) -> None:
    exc = refused(raw, content_type=content_type, limits=Limits(max_events=3))
    assert (exc.status, exc.reason) == (413, "too_many_events")
    assert exc.detail["limit"] == 3


def test_blank_ndjson_lines_do_not_count_as_events() -> None:
    raw = b"{}\n\n\n\n{}\n\n"
    decoded = parse(raw, content_type="application/x-ndjson", limits=Limits(max_events=2))
    assert len(decoded.events) == 2


# --- parse_events: depth ---------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
def test_event_nested_exactly_to_max_depth_is_accepted(content_type: str) -> None:
    limits = Limits(max_depth=4)
    event = nested(4)
    decoded = parse(dumps(event), content_type=content_type, limits=limits)
    assert decoded.events == [event]


def test_event_nested_deeper_than_max_depth_is_refused() -> None:
    exc = refused(dumps(nested(5)), limits=Limits(max_depth=4))
    assert (exc.status, exc.reason) == (400, "too_deep")
    assert exc.detail["limit"] == 4


def test_arrays_count_towards_depth() -> None:
    limits = Limits(max_depth=3)
    assert parse(b'{"a":[[1]]}', limits=limits).events == [{"a": [[1]]}]
    exc = refused(b'{"a":[[[1]]]}', limits=limits)
    assert (exc.status, exc.reason) == (400, "too_deep")


def test_outer_array_of_a_batch_does_not_count_towards_depth() -> None:
    limits = Limits(max_depth=2)
    decoded = parse(b'[{"a":{"b":1}},{"c":[1]}]', limits=limits)
    assert decoded.fmt == FORMAT_ARRAY
    exc = refused(b'[{"a":1},{"a":{"b":{"c":1}}}]', limits=limits)
    assert (exc.status, exc.reason) == (400, "too_deep")


def test_deep_event_in_ndjson_is_refused() -> None:
    raw = b'{"a":1}\n' + dumps(nested(6)) + b"\n"
    exc = refused(raw, content_type="application/x-ndjson", limits=Limits(max_depth=5))
    assert (exc.status, exc.reason) == (400, "too_deep")


def test_braces_inside_strings_do_not_count_as_depth() -> None:
    decoded = parse(b'{"s":"{{{{[[[[{{{{"}', limits=Limits(max_depth=2))
    assert decoded.events == [{"s": "{{{{[[[[{{{{"}]


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"[" * 100_000, "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json"),
        (b'[{"a":' + b"[" * 100_000, "application/json"),
        (b'{"ok":1}\n{"a":' + b"[" * 100_000 + b"\n", "application/x-ndjson"),
        (b'{"ok":1}\n{"a":' + b"[" * 100_000 + b"\n", "application/json"),
    ],
)
def test_pathological_nesting_is_a_400_never_a_crash(raw: bytes, content_type: str) -> None:
    exc = refused(raw, content_type=content_type)
    assert (exc.status, exc.reason) == (400, "too_deep")


def test_balanced_nesting_of_100000_levels_is_too_deep() -> None:
    exc = refused(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert (exc.status, exc.reason) == (400, "too_deep")


def test_nesting_between_the_limit_and_the_decoder_recursion_limit_is_too_deep() -> None:
    exc = refused(dumps(nested(300)), limits=Limits(max_depth=256))
    assert (exc.status, exc.reason) == (400, "too_deep")


# --- parse_events: numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n":123456789012345678901234567890}',
        b'{"n":-123456789012345678901234567890}',
        b'{"n":18446744073709551616}',
        b'{"a":{"b":[1,2,99999999999999999999]}}',
        b'[{"n":1},{"n":123456789012345678901234567890}]',
    ],
)
def test_integers_beyond_64_bits_are_refused(raw: bytes) -> None:
    exc = refused(raw)
    assert (exc.status, exc.reason) == (400, "number_out_of_range")


def test_huge_integer_in_ndjson_is_refused() -> None:
    raw = b'{"n":1}\n{"n":123456789012345678901234567890}\n'
    exc = refused(raw, content_type="application/x-ndjson")
    assert (exc.status, exc.reason) == (400, "number_out_of_range")


def test_integer_just_below_int64_min_is_refused_when_nested() -> None:
    exc = refused(b'{"a":{"n":-9223372036854775809}}')
    assert (exc.status, exc.reason) == (400, "number_out_of_range")


@pytest.mark.parametrize("number", [b"-9223372036854775809", b"-9999999999999999999"])
def test_integer_just_below_int64_min_is_refused_in_a_flat_body(number: bytes) -> None:
    exc = refused(b'{"n":' + number + b"}")
    assert (exc.status, exc.reason) == (400, "number_out_of_range")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n":1e400}',
        b'{"n":-1e400}',
        b'[{"n":1},{"n":1e400}]',
        b'{"a":{"b":[1.5e999]}}',
    ],
)
def test_floats_beyond_double_range_are_refused(raw: bytes) -> None:
    exc = refused(raw)
    assert (exc.status, exc.reason) == (400, "number_out_of_range")


def test_float_beyond_double_range_in_ndjson_is_refused() -> None:
    exc = refused(b'{"n":1}\n{"n":1e400}\n', content_type="application/x-ndjson")
    assert (exc.status, exc.reason) == (400, "number_out_of_range")


@pytest.mark.parametrize(
    "number", [2**64 - 1, 2**63, 2**63 - 1, -(2**63), 0, -1, 10**19, -(10**18)]
)
@pytest.mark.parametrize("nest", [False, True])
def test_integers_within_64_bits_are_accepted(number: int, nest: bool) -> None:
    event: dict[str, Any] = {"n": number, "deep": {"n": number}} if nest else {"n": number}
    decoded = parse(dumps(event))
    assert decoded.events == [event]


def test_integers_at_the_64_bit_edges_are_accepted_in_ndjson() -> None:
    raw = dumps({"n": 2**64 - 1}) + b"\n" + dumps({"n": -(2**63)}) + b"\n"
    decoded = parse(raw, content_type="application/x-ndjson")
    assert decoded.events == [{"n": 2**64 - 1}, {"n": -(2**63)}]


@pytest.mark.parametrize(
    "event",
    [
        {"id": "123456789012345678901234567890"},
        {"card": "4111111111111111111111111111", "n": 1},
        {"deep": {"id": "9" * 500}},
        {"pi": 3.14159265358979323846264338327950288},
        {"tiny": 1.234567890123456789012345e-300},
        {"big": 1.5e300},
        {"keys": {"12345678901234567890123": 1}},
    ],
)
def test_long_digit_runs_that_are_not_huge_integers_are_accepted(event: dict[str, Any]) -> None:
    decoded = parse(dumps(event))
    assert decoded.events == [event]


# --- parse_events: ordinary bodies -----------------------------------------------------------


def test_flat_body_under_the_limits_is_accepted() -> None:
    events = [{"i": i, "name": f"user-{i}", "ok": i % 2 == 0, "score": i / 3} for i in range(100)]
    decoded = parse(dumps(events), limits=Limits(max_events=100, max_depth=2))
    assert decoded.fmt == FORMAT_ARRAY
    assert decoded.events == events


def test_nested_body_under_the_limits_is_accepted() -> None:
    events = [
        {"user": {"id": i, "tags": ["a", {"k": [1, 2]}]}, "ctx": {"page": {"url": "/x"}}}
        for i in range(10)
    ]
    # event → user → tags → {"k"} → [1, 2]: five levels
    decoded = parse(dumps(events), limits=Limits(max_events=10, max_depth=5))
    assert decoded.events == events


def test_nested_ndjson_under_the_limits_is_accepted() -> None:
    events = [{"a": {"b": {"c": i}}} for i in range(5)]
    raw = b"\n".join(dumps(e) for e in events)
    decoded = parse(raw, content_type="application/x-ndjson", limits=Limits(max_depth=3))
    assert decoded.fmt == FORMAT_NDJSON
    assert decoded.events == events


def test_decompressed_gzip_body_parses_into_events() -> None:
    raw = decompress(gzip_bytes(PAYLOAD), None, DEFAULTS)
    decoded = parse(raw)
    assert decoded.fmt == FORMAT_NDJSON
    assert len(decoded.events) == 50
    assert decoded.events[0] == {"event": "click", "user": 42, "tags": ["a", "b"]}


@pytest.mark.parametrize(
    ("body", "skimmed"),
    [
        (b'[{"a":1},{"b":"x"}]', True),
        (b'{"a":1}', True),
        (b'[{"a":{"b":1}}]', False),  # nested: depth is checked on values
        (b'[{"a":12345678901234567890}]', False),  # may be out of range
        (b'[{"a":1.5E+300}]', False),
        (b'{"a":1}\n{"a":2}', False),  # NDJSON
    ],
)
def test_flat_bodies_are_checked_without_building_values(body: bytes, skimmed: bool) -> None:
    decoded = parse_events(body, declared_format="auto", content_type=None, limits=DEFAULTS)
    assert (decoded.events is None) is skimmed
    assert decoded.count == parse(body).count
