"""The NATS JetStream buffer against a real nats-server (started on a free loopback port):
publishes acknowledged once, consumers per sink, acknowledgements after the sink, redeliveries,
replay by time, and the refusals a sender sees as 503."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace.buffer.nats import NatsBuffer
from headrace.buffer.nats.writer import NatsWriter
from headrace.config.buffers import NatsBuffer as NatsSettings
from headrace.errors import BufferFull
from support.buffer import request
from support.natsserver import NatsNode, nats_server
from support.serverproc import free_port


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NatsNode]:
    with nats_server(tmp_path / "nats") as server:
        yield server


def settings(node: NatsNode | None = None, **kw: Any) -> NatsSettings:
    servers = [node.url] if node is not None else [f"nats://127.0.0.1:{free_port()}"]
    return NatsSettings.model_validate({"type": "nats", "servers": servers, **kw})


async def committed(cfg: NatsSettings, requests: list[Any]) -> NatsWriter:
    writer = NatsWriter(cfg, "w0")
    writer.start()
    for one in requests:
        await writer.commit(one)
    return writer


def conn() -> sqlite3.Connection:
    return sqlite3.connect(":memory:")


@pytest.mark.anyio
async def test_a_commit_returns_after_the_pub_ack_and_a_repeat_is_stored_once(
    node: NatsNode,
) -> None:
    cfg = settings(node)
    first = request([{"n": 1}], source="web")
    writer = await committed(cfg, [first, first, request([{"n": 2}], source="web")])
    assert writer.commits == 3 and writer.problem() is None
    buffer = NatsBuffer(cfg)
    try:
        reader = await asyncio.to_thread(buffer.reader, "lake", conn(), ["web"])
        polled = await asyncio.to_thread(reader.poll, 1 << 20)
        assert [i.request.body for i in polled.items] == [b'[{"n":1}]', b'[{"n":2}]']
        assert all(i.deliveries == 1 and not i.final for i in polled.items)
        reader.close()
    finally:
        await writer.stop()
        buffer.close()


def test_each_sink_reads_its_sources_and_acknowledges_after_it_committed(node: NatsNode) -> None:
    cfg = settings(node, ack_wait=1.0, max_deliver=3)
    writer_loop = asyncio.new_event_loop()
    writer = writer_loop.run_until_complete(committed(cfg, [
        request([{"n": 1}], source="web"), request([{"n": 2}], source="app"),
    ]))  # fmt: skip
    buffer = NatsBuffer(cfg)
    try:
        web = buffer.reader("lake", conn(), ["web"])
        polled = web.poll(1 << 20)
        assert [i.request.source for i in polled.items] == ["web"]
        batch = web.acknowledgement()
        batch.include(polled.progress)
        batch.settle()  # the lake committed it
        assert web.poll(1 << 20).items == []  # acknowledged: never again
        web.close()
        # a pg worker takes both and dies before the sink commits; the next worker gets them
        # again once ack_wait has passed, counted as redelivered, up to max_deliver
        for deliveries in (1, 2, 3):
            worker = NatsBuffer(cfg)
            reader = worker.reader("pg", conn(), ["app", "web"])
            deadline = time.monotonic() + 10
            items: list[Any] = []
            while len(items) < 2 and time.monotonic() < deadline:
                items += reader.poll(1 << 20).items
            assert sorted(i.request.source for i in items) == ["app", "web"]
            assert [i.deliveries for i in items] == [deliveries, deliveries]
            assert all(i.final == (deliveries == 3) for i in items)
            if deliveries < 3:
                reader.close()  # dies: no acknowledgement, no more in-progress marks
                worker.close()
        assert reader.backlog().messages == 2
        reader.close()
        worker.close()
    finally:
        writer_loop.run_until_complete(writer.stop())
        buffer.close()


def test_a_batch_in_hand_is_marked_in_progress_and_not_redelivered(node: NatsNode) -> None:
    cfg = settings(node, ack_wait=1.5)
    loop = asyncio.new_event_loop()
    writer = loop.run_until_complete(committed(cfg, [request([{"n": 1}], source="web")]))
    buffer = NatsBuffer(cfg)
    try:
        reader = buffer.reader("slow", conn(), ["web"])
        assert len(reader.poll(1 << 20).items) == 1
        time.sleep(4.0)  # a slow sink: well past ack_wait, but the batch is marked in progress
        assert reader.poll(1 << 20).items == []
        reader.close()
    finally:
        loop.run_until_complete(writer.stop())
        buffer.close()


def test_replay_publishes_a_time_range_again_with_its_ids(node: NatsNode) -> None:
    cfg = settings(node)
    t0 = time.time_ns() // 1000
    old = request([{"n": 0}], source="web", received_at_us=t0 - 3_600_000_000)
    inside = [request([{"n": i}], source="web", received_at_us=t0 + i) for i in (1, 2)]
    loop = asyncio.new_event_loop()
    writer = loop.run_until_complete(committed(cfg, [old, *inside]))
    buffer = NatsBuffer(cfg)
    try:
        queued = buffer.replay("s", t0, t0 + 1_000_000, ["lake"])
        assert queued == 2
        reader = buffer.reader("lake", conn(), ["web"])
        items = reader.poll(1 << 20).items
        replayed = [i.request for i in items if i.request.replay]
        assert [r.base_id for r in replayed] == [r.base_id for r in inside]  # the same ids
        assert all(r.sinks == ["lake"] for r in replayed)
        reader.close()
    finally:
        loop.run_until_complete(writer.stop())
        buffer.close()


@pytest.mark.anyio
async def test_an_unreachable_nats_answers_busy_and_says_why() -> None:
    cfg = settings(None, publish_timeout=0.5, connect_timeout=0.5)
    writer = NatsWriter(cfg, "w0")
    writer.start()
    with pytest.raises(BufferFull) as refused:
        await writer.commit(request([{"n": 1}], source="web"))
    assert refused.value.retry_after > 0
    problem = writer.problem() or ""
    assert "cannot reach NATS at nats://127.0.0.1:" in problem or "connecting" in problem
    await writer.stop()


@pytest.mark.anyio
async def test_a_missing_stream_names_the_setting(node: NatsNode) -> None:
    writer = NatsWriter(settings(node, manage_stream=False, publish_timeout=1.0), "w0")
    writer.start()
    with pytest.raises(BufferFull):
        await writer.commit(request([{"n": 1}], source="web"))
    assert "stream HEADRACE does not exist" in (writer.problem() or "")
    assert "buffer.manage_stream" in (writer.problem() or "")
    await writer.stop()


@pytest.mark.anyio
async def test_a_full_stream_is_refused_never_acknowledged(node: NatsNode) -> None:
    cfg = settings(node, max_bytes=4096)
    writer = NatsWriter(cfg, "w0")
    writer.start()
    big = b'[{"pad":"' + b"x" * 1500 + b'"}]'
    refused = None
    for _ in range(10):
        try:
            await writer.commit(request([{"pad": "x" * 1500}], source="web"))
        except BufferFull as exc:
            refused = exc
            break
    assert refused is not None and "is full" in str(refused), refused
    assert len(big) > 0
    await writer.stop()
