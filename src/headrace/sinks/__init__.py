"""Sinks: where delivery writes batches. Each type is a folder (or module) of this package that
registers its config and implementation (``headrace.registry``); a plugin adds one through the
``headrace.sinks`` entry point. Drivers load only when a pipeline uses the sink."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from headrace.registry import components

if TYPE_CHECKING:
    from headrace.config.base import SinkConfig
    from headrace.sinks.base import Sink

__all__ = ["build_sink"]


def build_sink(sink_id: str, config: SinkConfig, data_dir: Path) -> Sink:
    """The sink object for one configured sink (not yet opened)."""
    implementation = components().get("sink", config.type).load()
    sink: Sink = implementation(sink_id, config, data_dir)
    return sink
