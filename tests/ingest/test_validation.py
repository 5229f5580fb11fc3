from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.records import expand_events
from headrace.cli import main
from headrace.config.load import parse_pipeline
from headrace.errors import ConfigError
from headrace.server.app import WorkerApp

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"requestid": {"type": "string"}, "action": {"enum": ["click", "view"]}},
    "required": ["requestid", "action"],
}


def pipeline_text(**source: Any) -> str:
    return json.dumps({
        "sources": {"clicks": {"type": "http", "schema": SCHEMA, **source}, "open": {"type": "http"}},
        "sinks": {"lake": {"type": "lake", "inputs": ["clicks", "open"]}},
    })  # fmt: skip


async def client_for(
    data_dir: Path, text: str
) -> AsyncIterator[tuple[httpx.AsyncClient, WorkerApp]]:
    app = WorkerApp(parse_pipeline(text), data_dir)
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            yield client, app
    finally:
        await app.shutdown()


def stored(data_dir: Path) -> list[dict[str, Any]]:
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 24).items
    return [e.data for item in items for e in expand_events(item.request)]


async def settle(app: WorkerApp) -> None:
    while app.ingest.keeper.pending:
        await asyncio.sleep(0.01)


GOOD = {"requestid": "r1", "action": "click"}
BAD = {"requestid": "r2", "action": "hover"}


@pytest.mark.anyio
async def test_an_invalid_event_refuses_the_request_and_is_kept(data_dir: Path) -> None:
    async for client, app in client_for(data_dir, pipeline_text()):
        response = await client.post("/v1/streams/clicks/events", json=[GOOD, BAD])
        assert (response.status_code, response.json()["error"]) == (400, "schema_violation")
        assert response.json()["errors"] == [
            {"index": 1, "path": "/action", "message": "'hover' is not one of ['click', 'view']"}
        ]
        await settle(app)
        (row,) = app.ingest.badrows.find()
        assert (row.reason, row.source, row.path) == ("schema_violation", "clicks", "/action")
        assert json.loads(row.raw) == [GOOD, BAD]
    assert stored(data_dir) == []


@pytest.mark.anyio
async def test_keep_valid_stores_the_valid_and_lists_the_rest(data_dir: Path) -> None:
    async for client, app in client_for(data_dir, pipeline_text(on_invalid="keep_valid")):
        response = await client.post(
            "/v1/streams/clicks/events", json=[GOOD, BAD, {"action": "view"}]
        )
        body = response.json()
        assert (response.status_code, body["accepted"], len(body["ids"])) == (202, 1, 1)
        assert [r["index"] for r in body["rejected"]] == [1, 2]
        await settle(app)
        assert [json.loads(r.raw) for r in app.ingest.badrows.find()] == [BAD, {"action": "view"}]
        listed = (await client.get("/v1/badrows", params={"source": "clicks"})).json()["bad_rows"]
        assert [r["reason"] for r in listed] == ["schema_violation", "schema_violation"]
    assert stored(data_dir) == [GOOD]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "status", "kept"),
    [("drop", 202, GOOD), ("reject", 400, None), ("keep", 202, {**GOOD, "extra": 1})],
)
async def test_unknown_fields_policy(
    data_dir: Path, policy: str, status: int, kept: dict[str, Any] | None
) -> None:
    async for client, _ in client_for(data_dir, pipeline_text(unknown_fields=policy)):
        response = await client.post("/v1/streams/clicks/events", json={**GOOD, "extra": 1})
        assert response.status_code == status
        if policy == "reject":
            assert response.json()["errors"][0]["path"] == "/extra"
    assert stored(data_dir) == ([kept] if kept else [])


@pytest.mark.anyio
async def test_decode_refusals_are_bad_rows_and_auth_refusals_are_not(data_dir: Path) -> None:
    text = pipeline_text().replace(
        '"open": {"type": "http"}',
        '"open": {"type": "http", "auth": {"type": "token", "secrets": ["t"]}}',
    )
    async for client, app in client_for(data_dir, text):
        assert (await client.post("/v1/streams/clicks/events", content=b'{"a":')).status_code == 400
        assert (await client.post("/v1/streams/open/events", json={})).status_code == 401
        await settle(app)
        (row,) = app.ingest.badrows.find()
        assert (row.reason, row.raw, row.source) == ("decode_error", b'{"a":', "clicks")


def test_schema_files_and_invalid_schemas_are_checked_at_load(tmp_path: Path) -> None:
    (tmp_path / "clicks.schema.json").write_text(json.dumps(SCHEMA))
    config = tmp_path / "p.yaml"
    config.write_text(pipeline_text().replace(json.dumps(SCHEMA), '"clicks.schema.json"'))
    from headrace.config.load import load_pipeline

    assert load_pipeline(config).sources["clicks"].json_schema == SCHEMA
    with pytest.raises(ConfigError) as info:
        parse_pipeline(pipeline_text().replace('"type": "object"', '"type": "objekt"'))
    (problem,) = info.value.problems
    assert problem.path == "sources.clicks.schema" and "not a valid JSON Schema" in problem.message


@pytest.mark.anyio
async def test_replay_delivers_what_now_passes_once(data_dir: Path, tmp_path: Path) -> None:
    async for client, app in client_for(data_dir, pipeline_text(on_invalid="keep_valid")):
        await client.post("/v1/streams/clicks/events", json=[GOOD, BAD])
        await settle(app)
    relaxed = json.loads(pipeline_text())
    relaxed["sources"]["clicks"]["schema"]["properties"]["action"] = {"type": "string"}
    config = tmp_path / "relaxed.json"
    config.write_text(json.dumps(relaxed))
    runner = CliRunner()
    listed = runner.invoke(main, ["badrows", "list", "--data-dir", str(data_dir)])
    assert "schema_violation" in listed.output
    shown = runner.invoke(main, ["badrows", "show", "--data-dir", str(data_dir), "1"])
    assert '"hover"' in shown.output
    result = runner.invoke(
        main, ["badrows", "replay", "--data-dir", str(data_dir), "--config", str(config)]
    )
    assert "queued 1 event(s) from 1 bad row(s); 0 row(s) still fail" in result.output, (
        result.output
    )
    again = runner.invoke(
        main, ["badrows", "replay", "--data-dir", str(data_dir), "--config", str(config)]
    )
    assert "nothing to replay" in again.output
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 24).items
    replayed = [e for item in items for e in expand_events(item.request) if e.may_repeat]
    assert [e.data for e in replayed] == [BAD]


SIMPLE = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 2, "maxLength": 5},
        "n": {"type": "integer", "minimum": 0, "maximum": 10},
        "x": {"type": "number"},
        "ok": {"type": "boolean"},
        "kind": {"enum": ["a", "b"]},
    },
    "required": ["id", "kind"],
    "additionalProperties": False,
}
json_values = st.one_of(
    st.none(), st.booleans(), st.integers(-20, 20), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "b", "ab", "abcdef", "c"]),
)  # fmt: skip
events = st.dictionaries(
    st.sampled_from(["id", "n", "x", "ok", "kind", "other"]), json_values, max_size=6
)


@settings(max_examples=600, deadline=None)
@given(batch=st.lists(events, min_size=1, max_size=4))
def test_the_fast_schema_never_accepts_what_the_full_validator_refuses(
    batch: list[dict[str, Any]],
) -> None:
    from jsonschema import Draft202012Validator

    from headrace.config.base import Limits
    from headrace.ingest.decode import parse_events
    from headrace.ingest.validation import FastSchema

    fast = FastSchema.build(SIMPLE, "keep")
    assert fast is not None
    full = Draft202012Validator(SIMPLE)
    body = json.dumps(batch).encode()
    decoded = parse_events(
        body, declared_format="auto", content_type=None, limits=Limits(), skimmer=fast
    )
    if decoded.events is None:  # skimmed: the fast form vouched for every event
        assert all(full.is_valid(event) for event in batch)


def test_only_simple_schemas_get_a_fast_form() -> None:
    from headrace.ingest.validation import FastSchema

    assert FastSchema.build(SCHEMA, "keep") is not None
    assert FastSchema.build(SCHEMA, "drop") is None  # dropping needs the values
    assert FastSchema.build({**SIMPLE, "minProperties": 1}, "keep") is None
    assert (
        FastSchema.build(
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}, "keep"
        )
        is None
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "query", ["limit=0", "limit=\u00b9", "after=-1", "limit=1001", "after=" + "9" * 30]
)
async def test_bad_rows_listing_refuses_bad_parameters(data_dir: Path, query: str) -> None:
    async for client, _ in client_for(data_dir, pipeline_text()):
        response = await client.get(f"/v1/badrows?{query}")
        assert (response.status_code, response.json()["error"]) == (400, "invalid_parameter")
        assert (await client.get("/v1/streams/open/events?limit=\u00b9")).status_code == 400


@pytest.mark.parametrize(
    "prop",
    [
        {"enum": ["a", "bb"], "minLength": 2},
        {"type": "number", "maximum": 9007199254740992},
        {"type": ["string", "null"]},
        {"type": "integer", "minimum": 0.5},
        {"type": "string", "minLength": 1.0},
        {"type": "number", "minimum": True},
        {"type": "number", "exclusiveMinimum": 0},
    ],
)
def test_schemas_the_fast_form_cannot_mirror_exactly_get_none(prop: dict[str, Any]) -> None:
    from headrace.ingest.validation import FastSchema

    assert FastSchema.build({"type": "object", "properties": {"v": prop}}, "keep") is None
    assert (
        FastSchema.build(
            {"type": "object", "properties": {"__weakref__": {"type": "string"}}}, "keep"
        )
        is None
    )
