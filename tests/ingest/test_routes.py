"""Which source a path leads to (``headrace.ingest.routes``)."""

from __future__ import annotations

import json

from headrace.config.load import parse_pipeline
from headrace.config.models import default_pipeline
from headrace.ingest.routes import Router, path_is_stream_api

PIPELINE = json.dumps({
    "sources": {
        "split": {"type": "http", "path": "/webhooks/split/", "limits": {"max_events": 3}},
        "tenants": {"type": "http", "path": "/t/{stream}/in"},
        "root": {"type": "http", "path": "/"},
    },
    "sinks": {"lake": {"type": "lake", "inputs": ["split", "tenants", "root"]}},
})  # fmt: skip


def test_every_source_has_its_stream_path_and_its_own() -> None:
    router = Router(parse_pipeline(PIPELINE))
    for path in ("/v1/streams/split/events", "/webhooks/split", "/webhooks/split/"):
        matched = router.match(path)
        assert matched is not None, path
        route, stream = matched
        assert (route.source_id, stream, route.limits.max_events) == ("split", "split", 3)
    matched = router.match("/")
    assert matched is not None and matched[0].source_id == "root"
    assert router.match("/v1/streams/other/events") is None
    assert router.match("/webhooks") is None


def test_a_stream_segment_takes_one_whole_segment() -> None:
    router = Router(parse_pipeline(PIPELINE))
    matched = router.match("/t/acme/in")
    assert matched is not None
    route, stream = matched
    assert (route.source_id, route.stream, stream) == ("tenants", None, "acme")
    assert router.match("/t/acme/in/") is not None
    for path in ("/t//in", "/t/a/b/in", "/t/acme/out"):
        assert router.match(path) is None, path


def test_the_default_pipeline_takes_any_stream() -> None:
    router = Router(default_pipeline())
    matched = router.match("/v1/streams/clicks/events")
    assert matched is not None and matched[1] == "clicks"
    assert router.match("/v1/streams/clicks/other") is None
    assert path_is_stream_api("/v1/streams/x/events") and not path_is_stream_api("/v1/loads")
