"""Reading a request: only the headers asked for, a body within its limit, whole numbers."""

from __future__ import annotations

import pytest

from headrace.errors import RequestRejected
from headrace.web.request import (
    client_address,
    header,
    query_params,
    read_body,
    request_headers,
    whole,
)
from web.answers import body_of, request


def test_whole_numbers_are_ascii_digits_within_a_length() -> None:
    assert whole("0") and whole("123") and whole("1234", 4)
    assert not whole("12345", 4) and not whole("") and not whole("-1") and not whole("1.5")
    assert not whole("¹") and not whole("١٢")  # digits to str.isdigit, not to int


def test_only_the_wanted_headers_are_decoded() -> None:
    scope = request(headers={"Content-Type": "application/json"})
    scope["headers"] += [(b"x-other", "é".encode()), (b"content-type", b"text/plain")]
    assert request_headers(scope, frozenset({b"content-type"})) == {"content-type": "text/plain"}
    assert request_headers(scope, None)["x-other"] == "Ã©"  # latin-1, as HTTP has it
    assert header(scope, b"content-type") == "application/json"  # the first one
    assert header(scope, b"missing") is None


def test_client_and_query() -> None:
    assert client_address(request()) == "127.0.0.1"
    assert client_address(request(client=None)) is None
    scope = request(query=b"a=1&b=&a=2")
    assert query_params(scope) == [("a", "1"), ("a", "2")]
    assert query_params(scope, keep_blank_values=True) == [("a", "1"), ("b", ""), ("a", "2")]


@pytest.mark.anyio
async def test_a_body_is_read_whole_within_its_limit() -> None:
    assert await read_body(body_of(b"abc"), {}, 3) == b"abc"
    assert await read_body(body_of(b"ab", b"", b"c"), {}, 3) == b"abc"
    assert await read_body(body_of(b""), {"content-length": "0"}, 0) == b""
    one = b"x" * 10
    assert await read_body(body_of(one), {}, 10) is one  # one chunk: no copy


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("chunks", "headers"),
    [
        ((b"abcd",), {}),
        ((b"ab", b"cd"), {}),
        ((b"ab",), {"content-length": "4"}),  # refused before reading
    ],
)
async def test_a_body_over_its_limit_is_413(
    chunks: tuple[bytes, ...], headers: dict[str, str]
) -> None:
    with pytest.raises(RequestRejected) as info:
        await read_body(body_of(*chunks), headers, 3)
    assert (info.value.status, info.value.reason) == (413, "body_too_large")
    assert info.value.detail == {"limit": 3}


@pytest.mark.anyio
async def test_a_client_that_goes_away_is_400() -> None:
    with pytest.raises(RequestRejected) as info:
        await read_body(body_of(b"ab", b"", disconnect=True), {}, 100)
    assert (info.value.status, info.value.reason) == (400, "client_disconnected")
