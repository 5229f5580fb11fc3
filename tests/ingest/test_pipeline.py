"""One source's request path called directly (``headrace.ingest.pipeline.SourcePipeline``): the
stages in order, the answer only after the commit, refusals counted and kept as bad rows."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from headrace.buffer import open_buffer
from headrace.buffer.base import BufferWriter
from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.records import BufferedRequest, expand_events
from headrace.config.load import parse_pipeline
from headrace.config.models import LocalBuffer
from headrace.errors import BufferFull
from headrace.ids import event_ids, new_base_id
from headrace.ingest.badrows import BadRowKeeper
from headrace.ingest.pipeline import SourcePipeline, generated_ids_reply, noop
from headrace.storage.badrows import BadRowStore
from headrace.telemetry import metrics as m
from headrace.web.asgi import encode_json
from web.answers import Recorder, body_of, request

pytestmark = pytest.mark.anyio
URL = "/v1/streams/web/events"
SHOP = {"origin": "https://shop.example"}


def build(data_dir: Path, writer: Any, **fields: Any) -> SourcePipeline:
    pipeline = parse_pipeline(json.dumps({
        "sources": {"web": {"type": "http", **fields}},
        "sinks": {"lake": {"type": "lake", "inputs": ["web"]}},
    }))  # fmt: skip
    config = pipeline.http_sources()["web"]
    return SourcePipeline(
        "web", config, pipeline.limits_for(config), writer=writer, metrics=m.Registry(),
        keeper=BadRowKeeper(BadRowStore(data_dir)), data_dir=data_dir,
    )  # fmt: skip


@pytest.fixture
async def writer(data_dir: Path) -> AsyncIterator[BufferWriter]:
    writer = open_buffer(LocalBuffer(max_bytes=4096), data_dir).writer("w0")
    writer.start()
    yield writer
    await writer.stop()


async def post(
    pipeline: SourcePipeline, body: bytes, headers: dict[str, str] | None = None,
    stream: str = "web",
) -> Recorder:  # fmt: skip
    sent = Recorder()
    scope = request("POST", URL, headers=headers)
    await pipeline(scope, body_of(body), sent, stream)
    await pipeline.keeper.drain()
    return sent


def count(pipeline: SourcePipeline, name: str, **labels: str) -> float:
    return pipeline.metrics.values.get(m.key(name, source="web", **labels), 0)


def stored(data_dir: Path) -> list[dict[str, Any]]:
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 20).items
    return [e.data for item in items for e in expand_events(item.request)]


async def test_an_accepted_request_is_committed_then_answered(
    data_dir: Path, writer: BufferWriter
) -> None:
    pipeline = build(data_dir, writer)
    sent = await post(pipeline, b'[{"a":1},{"a":2}]')
    assert (sent.status, sent.headers["content-type"]) == (202, "application/json")
    reply = sent.json()
    assert reply["accepted"] == 2 and len(reply["ids"]) == 2 and "rejected" not in reply
    assert stored(data_dir) == [{"a": 1}, {"a": 2}]
    assert count(pipeline, "headrace_events_received_total") == 2
    assert count(pipeline, "headrace_events_accepted_total") == 2
    assert count(pipeline, "headrace_requests_total", status="202") == 1


async def test_success_status_and_body_are_the_sources(
    data_dir: Path, writer: BufferWriter
) -> None:
    pipeline = build(data_dir, writer, success_status=200, success_body="OK")
    sent = await post(pipeline, gzip.compress(b'[{"k":"u1"}]'))
    assert (sent.status, sent.body) == (200, b"OK")
    assert sent.headers["content-type"] == "text/plain; charset=utf-8"
    assert count(pipeline, "headrace_requests_total", status="200") == 1


class HeldWriter:
    """A buffer writer whose commits return only when released (to see what waits on them)."""

    def __init__(self) -> None:
        self.requests: list[BufferedRequest] = []
        self.release = asyncio.Event()

    async def commit(self, request: BufferedRequest) -> None:
        self.requests.append(request)
        await self.release.wait()


async def test_the_2xx_waits_for_the_commit(data_dir: Path) -> None:
    held = HeldWriter()
    pipeline = build(data_dir, held)
    sent = Recorder()
    task = asyncio.create_task(pipeline(request("POST", URL), body_of(b'{"a":1}'), sent, "web"))
    while not held.requests:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    assert sent.messages == []  # committed, not yet durable: nothing answered
    held.release.set()
    await task
    assert sent.status == 202 and held.requests[0].count == 1


async def test_an_empty_array_is_answered_without_a_commit(data_dir: Path) -> None:
    held = HeldWriter()
    sent = await post(build(data_dir, held), b"[]")
    assert (sent.status, sent.json()) == (202, {"accepted": 0, "ids": []})
    assert held.requests == []


async def test_content_refusals_keep_the_decompressed_body_as_a_bad_row(
    data_dir: Path, writer: BufferWriter
) -> None:
    pipeline = build(data_dir, writer)
    sent = await post(pipeline, gzip.compress(b'{"a":'))
    assert (sent.status, sent.json()["error"]) == (400, "invalid_json")
    (row,) = BadRowStore(data_dir).find()
    assert (row.reason, row.raw, row.stream) == ("decode_error", b'{"a":', "web")
    assert count(pipeline, "headrace_requests_rejected_total", reason="invalid_json") == 1
    assert count(pipeline, "headrace_requests_total", status="400") == 1


async def test_refused_senders_leave_no_bad_row_and_no_rate_spent(
    data_dir: Path, writer: BufferWriter
) -> None:
    pipeline = build(
        data_dir, writer, auth={"type": "token", "secrets": ["s3cret"]},
        rate_limit={"rate": 1, "burst": 1},
    )  # fmt: skip
    for _ in range(3):
        refused = await post(pipeline, b'{"a":')
        assert (refused.status, refused.json()["error"]) == (401, "missing_token")
    bad_json = await post(pipeline, b'{"a":', {"authorization": "s3cret"})
    assert bad_json.status == 400  # authorized: the rate was spent, the row is kept
    limited = await post(pipeline, b"{}", {"authorization": "s3cret"})
    assert (limited.status, limited.json()["error"]) == (429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert [r.reason for r in BadRowStore(data_dir).find()] == ["decode_error"]
    assert count(pipeline, "headrace_requests_rejected_total", reason="missing_token") == 3


async def test_keep_valid_answers_what_it_rejected(data_dir: Path, writer: BufferWriter) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    pipeline = build(data_dir, writer, schema=schema, on_invalid="keep_valid", id_field="n")
    sent = await post(pipeline, b'[{"n":1},{"n":"x"},{"n":3}]')
    reply = sent.json()
    assert (sent.status, reply["accepted"], reply["ids"]) == (202, 2, ["1", "3"])
    assert [r["index"] for r in reply["rejected"]] == [1]
    assert stored(data_dir) == [{"n": 1}, {"n": 3}]
    assert count(pipeline, "headrace_events_received_total") == 3
    assert count(pipeline, "headrace_events_accepted_total") == 2


async def test_a_full_buffer_is_503_with_retry_after_and_cors(
    data_dir: Path, writer: BufferWriter
) -> None:
    pipeline = build(data_dir, writer, cors={"allow_origins": ["https://shop.example"]})
    assert (await post(pipeline, json.dumps({"pad": "x" * 5000}).encode())).status == 202
    writer.guard.refresh()  # type: ignore[attr-defined]  # the local buffer measures now
    full = await post(pipeline, b"{}", SHOP)
    assert (full.status, full.json()["error"]) == (503, "buffer_full")
    assert set(full.json()) == {"error", "message"}
    assert int(full.headers["retry-after"]) > 0
    assert full.headers["access-control-allow-origin"] == "https://shop.example"
    assert count(pipeline, "headrace_requests_rejected_total", reason="buffer_full") == 1
    assert count(pipeline, "headrace_requests_total", status="503") == 1


class BrokenWriter:
    async def commit(self, request: BufferedRequest) -> None:
        raise OSError("disk on fire")


async def test_an_unexpected_failure_is_500_and_stores_nothing(data_dir: Path) -> None:
    pipeline = build(data_dir, BrokenWriter(), cors={"allow_origins": ["*"]})
    sent = await post(pipeline, b"{}", SHOP)
    assert (sent.status, sent.json()["error"]) == (500, "internal_error")
    assert "access-control-allow-origin" not in sent.headers
    assert count(pipeline, "headrace_requests_total", status="500") == 1


async def test_a_full_buffer_is_not_unexpected(data_dir: Path) -> None:
    class Full:
        async def commit(self, request: BufferedRequest) -> None:
            raise BufferFull("the buffer is full")

    sent = await post(build(data_dir, Full()), b"{}")
    assert sent.status == 503


async def test_an_invalid_stream_is_refused_before_the_body(data_dir: Path) -> None:
    held = HeldWriter()
    sent = await post(build(data_dir, held), b"{}", stream="../etc")
    assert (sent.status, sent.json()["error"]) == (400, "invalid_stream")
    assert BadRowStore(data_dir).find() == []


async def test_the_pipeline_decodes_only_the_headers_its_stages_read(data_dir: Path) -> None:
    pipeline = build(
        data_dir, HeldWriter(), id_header="Webhook-Id",
        auth={"type": "token", "header": "X-Token", "secrets": ["s"]},
        map={"copy": {"agent": "$header.User-Agent"}},
    )  # fmt: skip
    assert pipeline.header_names == frozenset({
        b"content-encoding", b"content-type", b"content-length", b"origin", b"webhook-id",
        b"x-token", b"user-agent",
    })  # fmt: skip


async def test_a_preflight_answers_what_the_source_allows(data_dir: Path) -> None:
    pipeline = build(data_dir, HeldWriter(), cors={"allow_origins": ["https://shop.example"]})
    asked = {**SHOP, "access-control-request-method": "POST"}
    sent = Recorder()
    await pipeline.preflight(request("OPTIONS", URL, headers=asked), sent)
    assert sent.status == 204 and sent.headers["access-control-allow-methods"] == "POST"
    refused = Recorder()
    evil = {**asked, "origin": "https://evil.example"}
    await pipeline.preflight(request("OPTIONS", URL, headers=evil), refused)
    assert (refused.status, refused.json()["error"]) == (403, "cors_forbidden")


async def test_noop_reads_the_body_and_stores_nothing() -> None:
    sent = Recorder()
    await noop(body_of(b"[", b"]"), sent)
    assert (sent.status, sent.json()) == (202, {"accepted": 0, "ids": []})


@pytest.mark.parametrize("count", [1, 2, 100, 4097, 10_000])
def test_the_reply_of_generated_ids_is_what_encode_json_writes(count: int) -> None:
    for base in (new_base_id(), new_base_id(0), new_base_id(0xFFFFFFFFFFFF)):
        expected = encode_json({"accepted": count, "ids": event_ids(base, count)})
        assert generated_ids_reply(base, count) == expected


async def test_a_reply_past_the_quick_table_lists_every_id(
    data_dir: Path, writer: BufferWriter
) -> None:
    pipeline = build(data_dir, writer, limits={"max_events": 20_000})
    sent = await post(pipeline, json.dumps([{"n": n} for n in range(10_001)]).encode())
    ids = sent.json()["ids"]
    assert len(ids) == len(set(ids)) == 10_001 and ids == sorted(ids)
