"""Publishing requests to the stream again: a time range of it (``headrace replay``), or given
requests (replayed dead letters, bad rows that now pass).

A time range is read with an ephemeral, ordered consumer starting at ``since`` (by the time the
stream received each message); each request of the stream and time asked for is published again
marked ``replay`` (for the chosen sinks), keeping its event ids, under a message id of its own so
the server's duplicate window does not take it for the original.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from headrace.buffer.nats.stream import subject_of
from headrace.buffer.records import BufferedRequest, decode_request, encode_request
from headrace.config.buffers import NatsBuffer as NatsSettings

READ_BATCH = 256
READ_WAIT = 1.0  # seconds without a message after which the range is read to its end


async def replay_range(
    js: Any,
    settings: NatsSettings,
    stream: str,
    since_us: int,
    until_us: int,
    sinks: list[str] | None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Publish the stream's requests received in ``[since, until)`` again; returns events."""
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    start = dt.datetime.fromtimestamp(since_us / 1_000_000, dt.UTC)
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start,
        ack_policy=AckPolicy.NONE, inactive_threshold=60.0,
    )  # fmt: skip
    subscription = await js.pull_subscribe(
        f"{settings.subject_prefix}.>", stream=settings.stream, config=config
    )
    events = 0
    again: list[BufferedRequest] = []
    try:
        while True:
            try:
                messages = await subscription.fetch(READ_BATCH, READ_WAIT)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            done = False
            for message in messages:
                request = decode_request(message.data)
                if request.received_at_us >= until_us or _stored_after(message, until_us):
                    done = True
                    break
                if request.stream != stream or request.replay:
                    continue
                if request.received_at_us < since_us:
                    continue
                again.append(msgspec.structs.replace(request, sinks=sinks, replay=True))
                events += request.count
            if done:
                break
    finally:
        await subscription.unsubscribe()
    await publish_requests(js, settings, again)
    if progress is not None:
        progress(events)
    return events


def _stored_after(message: Any, until_us: int) -> bool:
    stamp = message.metadata.timestamp
    return bool(stamp) and stamp.timestamp() * 1_000_000 >= until_us


async def publish_requests(js: Any, settings: NatsSettings, requests: list[BufferedRequest]) -> int:
    """Publish ``requests`` (each under a fresh message id); returns the events they hold."""
    limit = asyncio.Semaphore(256)  # in flight at once

    async def one(request: BufferedRequest) -> None:
        headers = {"Nats-Msg-Id": f"{request.base_id.hex()}-{uuid.uuid4().hex}"}
        async with limit:
            await js.publish(
                subject_of(settings, request.source), encode_request(request), headers=headers,
                timeout=settings.publish_timeout,
            )  # fmt: skip

    await asyncio.gather(*(one(r) for r in requests))
    return sum(r.count for r in requests)


__all__ = ["publish_requests", "replay_range"]
