from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.records import expand_events
from headrace.config.load import parse_pipeline
from headrace.server.app import WorkerApp

AUTHORIZER = """
CALLS = []

def authorize(request):
    CALLS.append(request)
    token = request["headers"].get("authorization", "")
    if token == "boom":
        raise RuntimeError("the directory is down")
    if token.startswith("user:"):
        return {"allow": True, "principal": token[5:], "context": {"tier": "gold", "path": request["path"]}}
    return False
"""

PIPELINE = json.dumps({
    "sources": {"api": {
        "type": "http",
        "auth": {"type": "python", "function": "hr_test_authorizer:authorize",
                 "cache_header": "Authorization", "cache_ttl": "60s"},
        "map": {"copy": {"user": "$principal", "tier": "$context.tier"}},
    }},
    "sinks": {"lake": {"type": "lake", "inputs": ["api"]}},
})  # fmt: skip


@pytest.mark.anyio
async def test_python_authorizer_decides_caches_and_attaches_its_principal(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hr_test_authorizer.py").write_text(AUTHORIZER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import hr_test_authorizer  # type: ignore[import-not-found]

    app = WorkerApp(parse_pipeline(PIPELINE), data_dir)
    await app.startup()
    url = "/v1/streams/api/events"
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            for _ in range(3):
                ok = await client.post(url, json={"a": 1}, headers={"authorization": "user:ada"})
                assert ok.status_code == 202
            assert len(hr_test_authorizer.CALLS) == 1  # cached by the Authorization header
            call = hr_test_authorizer.CALLS[0]
            assert (call["method"], call["path"], call["client_ip"]) == ("POST", url, "127.0.0.1")
            denied = await client.post(url, json={}, headers={"authorization": "nobody"})
            assert (denied.status_code, denied.json()["error"]) == (401, "denied")
            broken = await client.post(url, json={}, headers={"authorization": "boom"})
            assert (broken.status_code, broken.json()["error"]) == (401, "authorizer_error")
    finally:
        await app.shutdown()
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 20).items
    stored = [e.data for item in items for e in expand_events(item.request)]
    assert stored == [{"a": 1, "user": "ada", "tier": "gold"}] * 3


SCOPED = """
CALLS = []

def authorize(request):
    CALLS.append(request["path"])
    token = request["headers"].get("authorization", "")
    signed = request["headers"].get("x-sig") == "ok"
    return signed and token == "t-" + request["path"].rsplit("/", 2)[-2]
"""


@pytest.mark.anyio
async def test_cached_answers_stand_only_for_the_same_request_shape(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hr_scoped_authorizer.py").write_text(SCOPED)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = PIPELINE.replace("hr_test_authorizer", "hr_scoped_authorizer").replace(
        '"map": {"copy": {"user": "$principal", "tier": "$context.tier"}}',
        '"path": "/in/{stream}/events"',
    )
    app = WorkerApp(parse_pipeline(text), data_dir)
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            headers = {"authorization": "t-in", "x-sig": "ok"}  # every header reaches the function
            assert (await client.post("/in/in/events", json={}, headers=headers)).status_code == 202
            assert (await client.post("/in/in/events", json={}, headers=headers)).status_code == 202
            other = await client.post("/in/secret/events", json={}, headers=headers)
            assert other.status_code == 401  # the cached "allow" for /in/in does not stand here
            # another identity is asked afresh (and, without x-sig, refused)
            denied = await client.post(
                "/in/in/events", json={}, headers={"authorization": "t-other"}
            )
            assert denied.status_code == 401
    finally:
        await app.shutdown()
    import hr_scoped_authorizer  # type: ignore[import-not-found]

    assert hr_scoped_authorizer.CALLS == ["/in/in/events", "/in/secret/events", "/in/in/events"]


SLOW = """
import threading

ENTERED = threading.Event()
RELEASE = threading.Event()
RETURNED = threading.Event()
CALLS = []

def authorize(request):
    CALLS.append(request["path"])
    ENTERED.set()
    RELEASE.wait(2.0)  # a directory that takes 2 s to answer
    RETURNED.set()
    return True
"""

SLOW_PIPELINE = json.dumps({
    "sources": {
        "slow": {"type": "http", "auth": {"type": "python", "function": "hr_slow_authorizer:authorize",
                                          "timeout": "0.2s", "concurrency": 1}},
        "quick": {"type": "http"},
    },
    "sinks": {"lake": {"type": "lake", "inputs": ["slow", "quick"]}},
})  # fmt: skip


@pytest.mark.anyio
async def test_a_slow_authorizer_fails_closed_without_holding_the_loop(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    (tmp_path / "hr_slow_authorizer.py").write_text(SLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    import hr_slow_authorizer  # type: ignore[import-not-found]

    app = WorkerApp(parse_pipeline(SLOW_PIPELINE), data_dir)
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            slow = asyncio.create_task(client.post("/v1/streams/slow/events", json={"a": 1}))
            while not hr_slow_authorizer.ENTERED.is_set():
                await asyncio.sleep(0.01)
            # the function is inside its 2 s wait: the loop still answers the other source
            for _ in range(5):
                quick = await asyncio.wait_for(
                    client.post("/v1/streams/quick/events", json={"b": 1}), 10
                )
                assert quick.status_code == 202
            # answered while the function still waited (on the loop, it would have returned
            # before the loop could take them)
            assert not hr_slow_authorizer.RETURNED.is_set()
            timed_out = await asyncio.wait_for(slow, 10)
            assert (timed_out.status_code, timed_out.json()["error"]) == (503, "authorizer_timeout")
            assert timed_out.headers["retry-after"] == "1"
            # the one thread is still held by the first call: the next waits its deadline in the
            # queue, is refused the same way, and the function never sees it
            queued = await client.post("/v1/streams/slow/events", json={"a": 2})
            assert (queued.status_code, queued.json()["error"]) == (503, "authorizer_timeout")
            assert hr_slow_authorizer.CALLS == ["/v1/streams/slow/events"]
            metrics = (await client.get("/metrics")).text
            assert 'headrace_authorizer_timeouts_total{source="slow"} 2' in metrics
            assert (
                'headrace_requests_rejected_total{reason="authorizer_timeout",source="slow"} 2'
                in metrics
            )
            hr_slow_authorizer.RELEASE.set()  # the directory answers again
            for _ in range(200):
                answered = await client.post("/v1/streams/slow/events", json={"a": 3})
                if answered.status_code == 202:
                    break
                await asyncio.sleep(0.05)
            assert answered.status_code == 202
    finally:
        hr_slow_authorizer.RELEASE.set()
        await app.shutdown()
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 20).items
    stored = [e.data for item in items for e in expand_events(item.request)]
    assert stored.count({"a": 3}) == 1 and {"a": 1} not in stored and {"a": 2} not in stored


def test_the_timeout_and_concurrency_are_validated() -> None:
    from pydantic import ValidationError

    from headrace.authorizers.python import PythonAuth

    config = PythonAuth.model_validate({"type": "python", "function": "m:f"})
    assert (config.timeout, config.concurrency) == (1.0, 8)
    for bad in ({"timeout": 0}, {"concurrency": 0}):
        with pytest.raises(ValidationError):
            PythonAuth.model_validate({"type": "python", "function": "m:f", **bad})
