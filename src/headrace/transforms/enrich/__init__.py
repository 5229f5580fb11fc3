"""The ``enrich_http`` transform: each event looked up in another HTTP service (see ``lookup``)."""

from __future__ import annotations

from headrace.registry import register
from headrace.transforms.enrich.config import EnrichConfig

register(
    "transform", "enrich_http", config=EnrichConfig,
    implementation="headrace.transforms.enrich.lookup:EnrichHttp",
    healthcheck="headrace.transforms.enrich.lookup:healthcheck",
)  # fmt: skip
