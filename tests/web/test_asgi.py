"""The answers every HTTP layer sends: one whole body with its length; refusals as JSON."""

from __future__ import annotations

import pytest

from headrace.errors import RequestRejected
from headrace.web.asgi import JSON_HEADERS, send_body, send_error, send_json
from web.answers import Recorder

pytestmark = pytest.mark.anyio


async def test_a_body_goes_in_one_message_with_its_length() -> None:
    sent = Recorder()
    await send_body(sent, 201, b"hello", [(b"content-type", b"text/plain")])
    assert sent.status == 201 and sent.body == b"hello" and len(sent.messages) == 2
    assert sent.header_list == [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    assert "more_body" not in sent.messages[1]


async def test_json_is_the_default() -> None:
    sent = Recorder()
    await send_json(sent, {"a": [1, "é"]})
    assert sent.status == 200 and sent.json() == {"a": [1, "é"]}
    assert sent.headers["content-type"] == "application/json"
    assert JSON_HEADERS == [(b"content-type", b"application/json")]  # shared: never changed


async def test_a_refusal_carries_its_reason_detail_and_retry_after() -> None:
    sent = Recorder()
    refusal = RequestRejected(429, "rate_limited", "slow down", retry_after=3)
    await send_error(sent, refusal, [(b"vary", b"Origin")])
    assert sent.status == 429
    assert sent.json() == {"error": "rate_limited", "message": "slow down", "retry_after": 3}
    assert [k for k, _ in sent.header_list] == [
        b"content-type", b"vary", b"retry-after", b"content-length"
    ]  # fmt: skip
    assert sent.headers["retry-after"] == "3"
    plain = Recorder()
    await send_error(plain, RequestRejected(404, "not_found", "nothing at /x"))
    assert plain.json() == {"error": "not_found", "message": "nothing at /x"}
    assert "retry-after" not in plain.headers
