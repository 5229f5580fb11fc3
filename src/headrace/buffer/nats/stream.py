"""The JetStream stream headrace keeps its requests in, and the consumer of each sink.

The stream takes ``<subject_prefix>.>`` (a request is published to ``<prefix>.<source id>``),
keeps messages on file for ``max_age`` (the window of ``headrace replay``) whether delivered or
not, refuses new ones past ``max_bytes`` (``discard: new``: nothing accepted is dropped to make
room), drops a repeated ``Nats-Msg-Id`` within ``duplicate_window``, with ``replicas`` copies.

A sink's consumer is durable (``headrace-<sink id>``), pulls, acknowledges explicitly, filters
the subjects of the sources the sink reads, and redelivers a message unacknowledged for
``ack_wait`` up to ``max_deliver`` times. Any number of delivery workers share one consumer.
"""

from __future__ import annotations

from typing import Any

from headrace.config.buffers import NatsBuffer as NatsSettings


class StreamProblem(Exception):
    """The stream is missing or set up in a way headrace cannot use; the message names the
    setting to change."""


def subject_of(settings: NatsSettings, source_id: str) -> str:
    """The subject requests of ``source_id`` are published to."""
    return f"{settings.subject_prefix}.{source_id}"


def consumer_name(sink_id: str) -> str:
    """The durable consumer of a sink (consumer names take no dots)."""
    return "headrace-" + sink_id.replace(".", "_")


def stream_config(settings: NatsSettings) -> Any:
    """The ``StreamConfig`` headrace creates."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    return StreamConfig(
        name=settings.stream,
        subjects=[f"{settings.subject_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_age=settings.max_age,
        max_bytes=settings.max_bytes,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window,
    )


async def ensure_stream(js: Any, settings: NatsSettings) -> None:
    """Create the stream (or bring its limits to the settings) when headrace manages it; else
    check it can be used. ``StreamProblem`` says what is wrong."""
    import nats.js.errors

    try:
        info = await js.stream_info(settings.stream)
    except nats.js.errors.NotFoundError:
        if not settings.manage_stream:
            raise StreamProblem(
                f"stream {settings.stream} does not exist (create it with subjects "
                f"{settings.subject_prefix}.> and file storage, or set buffer.manage_stream: true)"
            ) from None
        await js.add_stream(stream_config(settings))
        return
    problem = _unusable(info.config, settings)
    if problem:
        raise StreamProblem(problem)
    if settings.manage_stream and _limits_differ(info.config, settings):
        await js.update_stream(stream_config(settings))


def _unusable(config: Any, settings: NatsSettings) -> str | None:
    wanted = f"{settings.subject_prefix}.>"
    subjects = list(config.subjects or [])
    if wanted not in subjects:
        return (f"stream {settings.stream} takes subjects {subjects}, not {wanted} "
                "(buffer.subject_prefix, or the stream's subjects)")  # fmt: skip
    if str(getattr(config.storage, "value", config.storage)) != "file":
        return f"stream {settings.stream} keeps messages in memory: headrace needs file storage"
    if str(getattr(config.retention, "value", config.retention)) != "limits":
        return (f"stream {settings.stream} has retention {config.retention}: headrace needs "
                "limits (messages kept for replay until max_age, whoever acknowledged them)")  # fmt: skip
    return None


def _limits_differ(config: Any, settings: NatsSettings) -> bool:
    return (
        (config.max_bytes, config.num_replicas) != (settings.max_bytes, settings.replicas)
        or abs((config.max_age or 0) - settings.max_age) > 1
        or str(getattr(config.discard, "value", config.discard)) != "new"
    )


def consumer_config(settings: NatsSettings, sink_id: str, subjects: list[str]) -> Any:
    """The durable pull consumer of ``sink_id`` over ``subjects``."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    name = consumer_name(sink_id)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait,
        max_deliver=settings.max_deliver,
        filter_subjects=subjects,
        max_ack_pending=-1,
        num_replicas=settings.replicas,
    )


async def delivery_state(js: Any, settings: NatsSettings, sinks: list[str]) -> dict[str, Any]:
    """The stream's size and each sink's consumer, as the dashboard shows them: messages not
    yet delivered (``pending``), delivered and not yet acknowledged (``ack_pending``, the
    batches workers hold), delivered more than once (``redelivered``), fetches waiting
    (``waiting``: idle workers), and the last acknowledged stream sequence. A sink whose
    consumer does not exist yet (no worker ever started) is ``None``."""
    import nats.js.errors

    info = await js.stream_info(settings.stream)
    consumers: dict[str, Any] = {}
    for sink_id in sinks:
        try:
            consumer = await js.consumer_info(settings.stream, consumer_name(sink_id))
        except nats.js.errors.NotFoundError:
            consumers[sink_id] = None
            continue
        consumers[sink_id] = {
            "pending": int(consumer.num_pending or 0),
            "ack_pending": int(consumer.num_ack_pending or 0),
            "redelivered": int(consumer.num_redelivered or 0),
            "waiting": int(consumer.num_waiting or 0),
            "acknowledged_seq": int(consumer.ack_floor.stream_seq or 0)
            if consumer.ack_floor
            else 0,
        }
    state = info.state
    stream = {
        "name": settings.stream,
        "messages": int(state.messages),
        "bytes": int(state.bytes),
        "first_seq": int(state.first_seq),
        "last_seq": int(state.last_seq),
        "replicas": settings.replicas,
        "leader": getattr(info.cluster, "leader", None) if info.cluster else None,
    }
    return {"stream": stream, "consumers": consumers}


__all__ = [
    "StreamProblem",
    "consumer_config",
    "consumer_name",
    "delivery_state",
    "ensure_stream",
    "stream_config",
    "subject_of",
]
