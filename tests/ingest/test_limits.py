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


# -- the budget shared by the workers of a server (``ingest.ratebudget``) ---------------------


HAMMER = """
import json, os, sys, time
from pathlib import Path
from headrace.errors import RequestRejected
from headrace.ingest.ratebudget import SharedBuckets

run_dir, go, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
table = SharedBuckets.at(run_dir)
buckets = {name: table.bucket(name, 0.001, 50) for name in names}
accepted = dict.fromkeys(names, 0)
while not go.exists():  # every worker starts taking at once
    time.sleep(0.001)
for _ in range(200):
    for name, bucket in buckets.items():
        try:
            bucket.take()
            accepted[name] += 1
        except RequestRejected:
            pass
print(json.dumps(accepted))
"""


def test_processes_share_one_budget_per_bucket(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    go = tmp_path / "go"
    # four workers take from the same key at once (and two from another): each bucket grants
    # its burst of 50 exactly once between them, however the takes interleave
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(tmp_path / "run"), str(go), *names],
            stdout=subprocess.PIPE,
            text=True,
        )
        for names in (["key:1", "key:2"], ["key:1", "key:2"], ["key:1"], ["key:1"])
    ]
    go.touch()
    results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sum(r["key:1"] for r in results) == 50
    assert sum(r.get("key:2", 0) for r in results) == 50


def test_a_shared_bucket_refills_at_its_rate_and_survives_a_clock_restart(tmp_path: Path) -> None:
    from headrace.ingest.ratebudget import SharedBuckets

    table = SharedBuckets.at(tmp_path)
    bucket = table.bucket("source:web", rate=2, capacity=3)
    assert bucket is not None
    now = 1000.0
    bucket.take(now)  # claimed full a moment ago (its clock is the real one): 3 tokens
    bucket.take(now)
    bucket.take(now)
    with pytest.raises(RequestRejected) as info:
        bucket.take(now)
    assert info.value.detail["retry_after"] == 1
    bucket.take(now + 0.5)  # one token back after half a second at 2/s
    with pytest.raises(RequestRejected):
        bucket.take(now + 0.6)
    # the same name from another mapping is the same bucket; another name is not
    again = SharedBuckets(tmp_path).bucket("source:web", rate=2, capacity=3)
    assert again is not None and again.offset == bucket.offset
    with pytest.raises(RequestRejected):
        again.take(now + 0.6)
    other = table.bucket("source:other", rate=2, capacity=1)
    assert other is not None and other.offset != bucket.offset
    other.take(now)
    # a machine that rebooted under a kept file: its clock starts again below the slot's
    bucket.take(5.0)


def test_a_full_table_falls_back_to_the_workers_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headrace.ingest import ratebudget
    from headrace.ingest.stages import Limit

    monkeypatch.setattr(ratebudget, "MAX_PROBES", 0)  # no slot is ever found
    limit = Limit("web", RateLimit(rate=100, burst=40), workers=4, data_dir=tmp_path)
    assert isinstance(limit.source, TokenBucket) and limit.source.capacity == 10
