"""Where accepted requests wait for delivery: ``local`` segment files (the default, one machine)
or ``nats``, a NATS JetStream stream shared by ingest and delivery nodes on many machines."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from headrace.config.base import Bytes, Model, Seconds

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUBJECT = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class LocalBuffer(Model):
    """The embedded durable buffer: checksummed segment files, fsync'd with group commit."""

    type: Literal["local"] = "local"
    max_bytes: Bytes = 10 * 1024**3
    """Largest the buffer may grow; past it, ingest answers 503 with Retry-After."""
    min_free_bytes: Bytes = 256 * 1024**2
    """Free disk space kept in reserve; below it, ingest answers 503 with Retry-After."""
    segment_bytes: Bytes = 64 * 1024**2
    """A segment file is closed and a new one started past this size."""
    segment_age: Seconds = 300.0
    """...or past this age, so retention can remove old data."""
    retention: Seconds = 24 * 3600.0
    """How long delivered data is kept for ``headrace replay`` (less when the buffer nears
    ``max_bytes``: room for new events comes first)."""

    @property
    def kept_for(self) -> float:
        """How long accepted data stays available to ``headrace replay``."""
        return self.retention

    @property
    def shared(self) -> bool:
        """Whether processes on many machines may ingest and deliver through it (no: one data
        directory on one machine)."""
        return False


class NatsTls(Model):
    """TLS to the NATS servers (servers named ``tls://`` use it too)."""

    ca_file: str | None = None
    """CA bundle that signed the servers' certificates; none: the system's."""
    cert_file: str | None = None
    """Client certificate, for servers that require one (with ``key_file``)."""
    key_file: str | None = None
    """The client certificate's key."""

    @model_validator(mode="after")
    def _pair(self) -> NatsTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class NatsBuffer(Model):
    """A NATS JetStream stream: one message per accepted request (``Nats-Msg-Id`` = the
    request's id, so a retried publish is stored once), the 2xx sent after the server's PubAck,
    one durable pull consumer per sink, acknowledged after the sink committed. Ingest and
    delivery nodes may run on any number of machines (``headrace ingest``, ``headrace
    deliver``). See docs/deploy.md for a cluster whose acks mean "on disk on a quorum"."""

    type: Literal["nats"]
    servers: list[str] = Field(min_length=1)
    """Server URLs, e.g. ``nats://10.0.0.1:4222`` (``tls://`` for TLS); the client finds the
    rest of the cluster from them."""
    stream: str = "HEADRACE"
    """JetStream stream name."""
    subject_prefix: str = "headrace"
    """Requests are published to ``<prefix>.<source id>``; the stream takes ``<prefix>.>``."""
    replicas: Literal[1, 3, 5] = 1
    """Copies of each message (3 or 5 on a cluster; with 1, a machine that loses its disk
    loses what it held that was not yet delivered)."""
    max_age: Seconds = Field(default=24 * 3600.0, gt=0)
    """How long messages are kept, delivered or not: the window of ``headrace replay``."""
    max_bytes: Bytes = Field(default=10 * 1024**3, gt=0)
    """Largest the stream may grow; past it ingest answers 503 with Retry-After (messages are
    never discarded to make room)."""
    duplicate_window: Seconds = Field(default=120.0, gt=0)
    """How long the server remembers message ids to drop a repeated publish."""
    manage_stream: bool = True
    """Create the stream (and update its limits) when an ingest node connects; false: it must
    exist with subjects ``<prefix>.>`` and file storage."""
    token: SecretStr | None = None
    """Authentication token."""
    user: str | None = None
    """User name (with ``password``)."""
    password: SecretStr | None = None
    """Password of ``user``."""
    creds_file: str | None = None
    """A ``.creds`` file (JWT and NKey seed) for a decentralized-auth account."""
    nkey_seed_file: str | None = None
    """A file holding an NKey seed."""
    tls: NatsTls | None = None
    """TLS settings."""
    connect_timeout: Seconds = Field(default=5.0, gt=0)
    """Longest wait for one connection attempt."""
    publish_timeout: Seconds = Field(default=5.0, gt=0)
    """Longest wait for a PubAck before the request answers 503 (the sender retries)."""
    max_pending_publishes: int = Field(default=4096, ge=1)
    """Publishes one ingest worker keeps in flight (pipelined); more wait their turn."""
    ack_wait: Seconds = Field(default=60.0, gt=0)
    """How long a delivered message may go unacknowledged before it is delivered again (while
    a sink works on a batch, its messages are marked in progress)."""
    max_deliver: int = Field(default=10, ge=2)
    """Deliveries of one message after which it goes to the sink's dead letters
    (``redelivered_too_often``): workers kept dying on it."""

    @field_validator("stream")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a stream name uses letters, digits, '-' and '_' (at most 64)")
        return value

    @field_validator("subject_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _SUBJECT.match(value):
            raise ValueError("dot-separated tokens of letters, digits, '-' and '_'")
        return value

    @field_validator("servers")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^(nats|tls|ws|wss)://[^/\s]+$", url):
                raise ValueError(f'"{url}" is not a server URL (nats://host:port)')
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> NatsBuffer:
        given = [n for n in ("token", "user", "creds_file", "nkey_seed_file") if getattr(self, n)]
        if len(given) > 1:
            raise ValueError(f"give one way to authenticate, not {' and '.join(given)}")
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        return self

    @property
    def kept_for(self) -> float:
        """How long accepted data stays available to ``headrace replay``."""
        return self.max_age

    @property
    def shared(self) -> bool:
        """Whether processes on many machines may ingest and deliver through it."""
        return True


__all__ = ["LocalBuffer", "NatsBuffer", "NatsTls"]
