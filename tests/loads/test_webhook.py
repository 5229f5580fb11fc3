"""The bulk_export webhook and /v1/loads, in-process through the ingest app."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from headrace.config.load import parse_pipeline
from headrace.loads.history import LoadHistory
from headrace.server.app import WorkerApp

pytestmark = pytest.mark.anyio

PIPELINE = """
sources:
  controlshift:
    type: bulk_export
    path: /webhooks/controlshift
    auth: {type: hmac, preset: controlshift, secrets: [s3cret]}
    tables: [signatures, members]
    warehouse: {type: duckdb}
  strict:
    type: bulk_export
    path: /webhooks/strict
    tables: [signatures]
    unknown_table: reject
    warehouse: {type: duckdb}
api: {read_tokens: [reader]}
"""
URL = "https://exports.example/signatures_1.csv?X-Amz-Credential=k&X-Amz-Signature=sig"


def event(
    kind: str = "data.full_table_exported", table: str = "signatures", url: str = URL
) -> bytes:
    # as ControlShift writes it: "&" escaped as \u0026 (JSON decoding gives the "&" back)
    return (
        json.dumps({"type": kind, "data": {"url": url, "table": table}})
        .replace("&", "\\u0026")
        .encode()
    )


def signed(body: bytes, key: str = "s3cret") -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {"X-ControlShift-Webhook-Signature": f"sha256:{digest}"}


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = WorkerApp(parse_pipeline(PIPELINE), data_dir)
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            yield client
    finally:
        await app.shutdown()


async def post(
    client: httpx.AsyncClient, body: bytes, path: str = "/webhooks/controlshift"
) -> httpx.Response:
    return await client.post(path, content=body, headers=signed(body))


async def test_an_export_event_is_recorded_before_the_200(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    answer = await post(client, event())
    assert answer.status_code == 200
    assert answer.json() == {"status": "processed", "load_id": 1}
    job = LoadHistory.in_data_dir(data_dir).get(1)
    assert (job.source, job.table_name, job.kind, job.status) == (
        "controlshift",
        "signatures",
        "full",
        "pending",
    )
    assert job.fetch_url == URL  # \u0026 decoded, nothing else unescaped
    assert "sig" not in job.url.split("Signature=")[1]
    again = await post(client, event(url=URL.replace("=sig", "=resigned")))
    assert again.json() == {"status": "processed", "load_id": 1, "duplicate": True}
    inc = await post(client, event("data.incremental_table_exported"))
    assert inc.json()["load_id"] == 2


async def test_other_events_and_tables(client: httpx.AsyncClient, data_dir: Path) -> None:
    other = await post(client, json.dumps({"type": "petition.created", "data": {}}).encode())
    assert (other.status_code, other.json()["status"]) == (200, "skipped")
    unknown = await post(client, event(table="secrets"))
    assert unknown.status_code == 200
    assert unknown.json()["status"] == "skipped" and unknown.json()["reason"] == "table_not_allowed"
    assert LoadHistory.in_data_dir(data_dir).get(unknown.json()["load_id"]).status == "skipped"
    rejected = await post(client, event(table="secrets"), "/webhooks/strict")
    assert (rejected.status_code, rejected.json()["error"]) == (422, "table_not_allowed")


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"not json", 400, "invalid_json"),
        (b'["a"]', 400, "invalid_webhook"),
        (json.dumps({"type": "data.full_table_exported"}).encode(), 400, "invalid_webhook"),
        (event(table="x; drop table y"), 400, "invalid_table"),
        (event(table="_headrace_loads"), 400, "reserved_table"),
        (event(table="_HR_merge"), 400, "reserved_table"),
        (event(url="file:///etc/passwd"), 422, "forbidden_scheme"),
        (event(url="gopher://127.0.0.1:6379/_INFO"), 422, "forbidden_scheme"),
    ],
)
async def test_bad_events_are_refused(
    client: httpx.AsyncClient, body: bytes, status: int, reason: str
) -> None:
    answer = await post(client, body)
    assert (answer.status_code, answer.json()["error"]) == (status, reason)


async def test_the_signature_is_checked(client: httpx.AsyncClient, data_dir: Path) -> None:
    body = event()
    answer = await client.post(
        "/webhooks/controlshift", content=body, headers=signed(body, "wrong")
    )
    assert answer.status_code == 401
    answer = await client.post("/webhooks/controlshift", content=body)
    assert answer.status_code == 401
    assert not (data_dir / "loads.db").exists() or LoadHistory.in_data_dir(data_dir).find() == []


async def test_loads_api(client: httpx.AsyncClient) -> None:
    await post(client, event())
    await post(client, event(table="members"))
    assert (await client.get("/v1/loads")).status_code == 401
    auth = {"Authorization": "Bearer reader"}
    listed = (await client.get("/v1/loads?limit=1", headers=auth)).json()
    assert [j["table"] for j in listed["loads"]] == ["members"] and listed["next_before"] == 2
    shown = (await client.get("/v1/loads/1", headers=auth)).json()
    assert (
        shown["status"] == "pending"
        and "fetch_url" not in shown
        and "sig" not in shown["url"].split("Signature=")[1]
    )
    assert (await client.get("/v1/loads/99", headers=auth)).status_code == 404
    retried = await client.post("/v1/loads/1/retry", headers=auth)
    assert (retried.status_code, retried.json()["error"]) == (409, "cannot_retry")
    cancelled = await client.post("/v1/loads/1/cancel", headers=auth)
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "skipped")
    retried = await client.post("/v1/loads/1/retry", headers=auth)
    assert retried.status_code == 409  # a cancelled job forgot its URL
    assert (await client.get("/v1/loads?status=bogus", headers=auth)).status_code == 400
    assert (await client.get("/v1/loads?status=skipped", headers=auth)).json()["loads"][0][
        "id"
    ] == 1


async def test_concurrent_deliveries_make_one_job_per_export(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    import asyncio

    same = [post(client, event()) for _ in range(20)]
    different = [post(client, event(url=f"https://exports.example/s_{i}.csv")) for i in range(20)]
    answers = await asyncio.gather(*same, *different)
    assert all(a.status_code == 200 for a in answers)
    ids = [a.json()["load_id"] for a in answers]
    assert len(set(ids[:20])) == 1 and len(set(ids[20:])) == 20
    assert len(LoadHistory.in_data_dir(data_dir).find(limit=100)) == 21


async def test_concurrent_first_deliveries_share_one_history_connection(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    """The first deliveries on a fresh data dir arrive together; each opening its own connection
    made them race to create loads.db and switch it to WAL ("database is locked", about one run
    in 25 of the test above) and leaked all connections but one."""
    import asyncio

    answers = await asyncio.gather(
        *(post(client, event(url=f"https://exports.example/s_{i}.csv")) for i in range(40))
    )
    assert all(a.status_code == 200 for a in answers)
    database = str(data_dir / "loads.db")
    opened = [fd for fd in os.listdir("/proc/self/fd") if _target(fd) == database]
    assert len(opened) == 1


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


async def test_every_200_says_processed_and_no_refusal_does(client: httpx.AsyncClient) -> None:
    """ControlShift's reference receiver answers ``x-controlshift-processed: 1`` with its JSON."""
    answers = [
        await post(client, event()),  # processed
        await post(client, event()),  # duplicate
        await post(client, json.dumps({"type": "petition.created", "data": {}}).encode()),
        await post(client, event(table="secrets")),  # skipped: not in tables
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-controlshift-processed"] == "1"
        assert answer.headers["content-type"] == "application/json"
    body = event()
    refusals = [
        await client.post("/webhooks/controlshift", content=body, headers=signed(body, "wrong")),
        await post(client, b"not json"),
        await post(client, event(url="file:///etc/passwd")),
        await post(client, event(table="secrets"), "/webhooks/strict"),
        await client.get("/webhooks/controlshift"),
    ]
    assert [r.status_code for r in refusals] == [401, 400, 422, 422, 405]
    assert all("x-controlshift-processed" not in r.headers for r in refusals)


async def test_a_failure_does_not_say_processed(client: httpx.AsyncClient, data_dir: Path) -> None:
    (data_dir / "loads.db").mkdir()  # the batch history cannot be opened: nothing is recorded
    answer = await post(client, event())
    assert (answer.status_code, answer.json()["error"]) == (500, "internal_error")
    assert "x-controlshift-processed" not in answer.headers
