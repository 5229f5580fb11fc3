"""The whole pipeline file: its sources, transforms and sinks (by registered type), the buffer,
the default limits and who may read.

Every model rejects unknown keys; each field's docstring is its user documentation
(``headrace docs`` prints them). Transform and sink models live beside their implementations
and register themselves (``headrace.registry``); the unions here are built from the registry.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from headrace.config.base import (
    Limits,
    Model,
    NonEmptySecret,
    SinkConfig,
    TransformConfig,
)
from headrace.config.buffers import LocalBuffer, NatsBuffer
from headrace.config.bulk import BulkExportSource
from headrace.config.graph import routes_of
from headrace.config.server import ServerSettings
from headrace.config.sources import HttpSource
from headrace.registry import ComponentUnion, components, rebuild_on_registration


class ApiSettings(Model):
    """Who may read events back and see the dashboard (``/``, ``GET /v1/streams/*/events``,
    ``/v1/badrows``, ``/v1/deadletters``). Listening beyond loopback needs a credential here."""

    read_tokens: list[NonEmptySecret] = Field(default_factory=list)
    """Tokens a reader sends in ``read_header`` (``Bearer <token>`` or the bare token); none:
    reads are open (the server listens on 127.0.0.1 unless told otherwise)."""
    read_header: str = "Authorization"
    """Header holding a read token."""
    users: dict[str, NonEmptySecret] = Field(default_factory=dict)
    """User name: password, for HTTP basic auth on the dashboard and the read API (a browser
    asks for them). A read token also works as the password, with any user name."""


SOURCE_TYPES: dict[str, type[Model]] = {"http": HttpSource, "bulk_export": BulkExportSource}
"""Sources are part of headrace's core: http events and bulk_export table loads."""

Source = Annotated[HttpSource | BulkExportSource, Field(discriminator="type")]
Transform = Annotated[TransformConfig, ComponentUnion("transform")]
"""One of the registered transform configs, chosen by ``type``."""
Sink = Annotated[SinkConfig, ComponentUnion("sink")]
"""One of the registered sink configs, chosen by ``type``."""


@rebuild_on_registration
class Pipeline(Model):
    """A whole pipeline: where events come from, how they are changed, where they go."""

    # the component unions are known once every component has registered
    model_config = ConfigDict(**Model.model_config, defer_build=True)

    sources: dict[str, Source]
    """Where events come from, keyed by id."""
    transforms: dict[str, Transform] = Field(default_factory=dict)
    """How events are changed on the way, keyed by id."""
    sinks: dict[str, Sink] = Field(default_factory=dict)
    """Where events are delivered, keyed by id."""
    buffer: Annotated[LocalBuffer | NatsBuffer, Field(discriminator="type")] = LocalBuffer()
    """Where accepted events wait for delivery."""
    limits: Limits = Limits()
    """Default request limits for http sources."""
    api: ApiSettings = ApiSettings()
    """Who may read events and bad rows back."""
    server: ServerSettings = ServerSettings()
    """How each ingest worker treats HTTP connections: request-head limits, deadlines for slow
    clients, open connections."""

    def http_sources(self) -> dict[str, HttpSource]:
        """The sources whose events are stored (``bulk_export`` sources make load jobs)."""
        return {sid: s for sid, s in self.sources.items() if isinstance(s, HttpSource)}

    def bulk_sources(self) -> dict[str, BulkExportSource]:
        """The ``bulk_export`` sources (see ``headrace.loads``)."""
        return {sid: s for sid, s in self.sources.items() if isinstance(s, BulkExportSource)}

    def limits_for(self, source: HttpSource | BulkExportSource) -> Limits:
        """The limits that apply to ``source``."""
        return source.limits or self.limits

    def sinks_for_source(self, source_id: str) -> list[str]:
        """Ids of the sinks that receive events from ``source_id`` (directly or through
        transforms)."""
        return [sid for sid in self.sinks if source_id in routes_of(self, sid)]


DEFAULT_SOURCE_ID = "events"
DEFAULT_SINK_ID = "lake"


def default_pipeline() -> Pipeline:
    """The built-in pipeline used with no config file: any stream, into the local lake."""
    lake = components().get("sink", "lake").config
    return Pipeline(
        sources={
            DEFAULT_SOURCE_ID: HttpSource(type="http", path="/v1/streams/{stream}/events"),
        },
        sinks={
            DEFAULT_SINK_ID: lake.model_validate({"type": "lake", "inputs": [DEFAULT_SOURCE_ID]})
        },
    )
