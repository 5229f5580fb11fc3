from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from headrace.config.load import parse_pipeline
from headrace.config.sources import RateLimit
from headrace.errors import RequestRejected
from headrace.ingest.limits import TokenBucket
from headrace.server.app import WorkerApp


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, capacity=3)
    start = bucket.updated
    for _ in range(3):
        bucket.take(start)
    with pytest.raises(RequestRejected) as info:
        bucket.take(start)
    assert (info.value.status, info.value.reason, info.value.detail["retry_after"]) == (
        429,
        "rate_limited",
        1,
    )
    bucket.take(start + 0.5)  # one token back after half a second at 2/s
    with pytest.raises(RequestRejected):
        bucket.take(start + 0.6)


def test_each_worker_enforces_its_share() -> None:
    bucket = TokenBucket.for_worker(RateLimit(rate=100, burst=40), workers=4)
    assert (bucket.rate, bucket.capacity) == (25, 10)


PIPELINE = """
sources:
  web:
    type: http
    rate_limit: {rate: 1, burst: 2}
    cors: {allow_origins: ["https://shop.example"], allow_headers: [Content-Type, X-Api-Key]}
sinks:
  lake: {type: lake, inputs: [web]}
"""


@pytest.mark.anyio
async def test_rate_limit_and_cors_over_http(data_dir: Path) -> None:
    app = WorkerApp(parse_pipeline(PIPELINE), data_dir)
    await app.startup()
    url = "/v1/streams/web/events"
    shop = {"origin": "https://shop.example"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            ok = await client.post(url, json={"a": 1}, headers=shop)
            assert ok.status_code == 202
            assert ok.headers["access-control-allow-origin"] == "https://shop.example"
            other = await client.post(
                url, json={"a": 2}, headers={"origin": "https://evil.example"}
            )
            assert "access-control-allow-origin" not in other.headers
            limited = await client.post(url, json={"a": 3}, headers=shop)
            assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.headers.get("access-control-allow-origin") == "https://shop.example", (
                limited.headers
            )
            # else a page on the shop's origin could not read how long to wait
            assert limited.headers["access-control-expose-headers"] == "Retry-After"
            preflight = await client.options(url, headers={
                **shop, "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, x-api-key"})  # fmt: skip
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-methods"] == "POST"
            assert preflight.headers["access-control-max-age"] == "600"
            refused = await client.options(url, headers={
                "origin": "https://evil.example", "access-control-request-method": "POST"})  # fmt: skip
            assert (refused.status_code, refused.json()["error"]) == (403, "cors_forbidden")
            bad_header = await client.options(url, headers={
                **shop, "access-control-request-method": "POST", "access-control-request-headers": "x-secret"})  # fmt: skip
            assert bad_header.status_code == 403
    finally:
        await app.shutdown()


def test_credentials_with_any_origin_is_a_config_error() -> None:
    from pydantic import ValidationError

    from headrace.config.sources import Cors

    with pytest.raises(ValidationError, match='cannot go with "\\*"'):
        Cors(allow_origins=["*"], allow_credentials=True)


READ_GUARDED = """
sources:
  web: {type: http}
api: {read_tokens: ["reader-secret"]}
sinks:
  lake: {type: lake, inputs: [web]}
"""


@pytest.mark.anyio
async def test_read_tokens_guard_events_and_bad_rows(data_dir: Path) -> None:
    app = WorkerApp(parse_pipeline(READ_GUARDED), data_dir)
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            for path in ("/v1/streams/web/events", "/v1/badrows"):
                refused = await client.get(path)
                assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized_read")
                ok = await client.get(path, headers={"authorization": "Bearer reader-secret"})
                assert ok.status_code == 200
            assert (
                await client.post("/v1/streams/web/events", json={})
            ).status_code == 202  # writes unchanged
    finally:
        await app.shutdown()
