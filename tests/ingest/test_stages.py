"""Each stage of the request path on its own: authorize, limit, decode, validate, assign ids,
map, commit (``headrace.ingest.stages``)."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from headrace.authorizers import Principal, SourceAuth
from headrace.buffer import open_buffer
from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.records import FORMAT_ARRAY, FORMAT_NDJSON, FORMAT_OBJECT, expand_events
from headrace.config.base import Limits
from headrace.config.load import parse_pipeline
from headrace.config.models import LocalBuffer
from headrace.config.sources import HttpSource, RateLimit
from headrace.errors import BufferFull, RequestRejected
from headrace.ids import event_ids, new_base_id
from headrace.ingest.badrows import BadRowKeeper
from headrace.ingest.decode import Decoded
from headrace.ingest.mapping import Mapper
from headrace.ingest.stages import (
    AssignIds,
    Authorize,
    Commit,
    Decode,
    Limit,
    MapEvents,
    Validate,
    check_stream,
)
from headrace.ingest.validation import SchemaCheck
from headrace.storage.api_keys import ApiKey
from headrace.storage.badrows import BadRowStore
from web.answers import request

LIMITS = Limits()
SCHEMA = {
    "type": "object",
    "properties": {"action": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["action"],
}


def source(**fields: Any) -> HttpSource:
    text = json.dumps({
        "sources": {"web": {"type": "http", **fields}},
        "sinks": {"lake": {"type": "lake", "inputs": ["web"]}},
    })  # fmt: skip
    found = parse_pipeline(text).sources["web"]
    assert isinstance(found, HttpSource)
    return found


def refusal(call: Any, *args: Any) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        call(*args)
    return info.value


def decoded(*events: dict[str, Any]) -> Decoded:
    body = json.dumps(list(events)).encode()
    return Decoded(FORMAT_ARRAY, len(events), body, list(events))


# -- check_stream -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clicks", "a.b-c_d", "0", "x" * 128])
def test_stream_names_that_pass(name: str) -> None:
    check_stream(name)


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "a b", "x" * 129, "é"])
def test_stream_names_that_are_refused(name: str) -> None:
    assert refusal(check_stream, name).reason == "invalid_stream"


# -- authorize --------------------------------------------------------------------------------


def authorized(authorize: Authorize, *args: Any) -> Principal | None:
    return asyncio.run(authorize(*args))


def test_authorize_passes_a_token_and_names_the_refusal_of_others() -> None:
    config = source(auth={"type": "token", "header": "X-Token", "secrets": ["s3cret"]})
    authorize = Authorize(SourceAuth(config, "web"))
    assert authorize.header_names == frozenset({b"x-token"})
    assert not authorize.reads_all_headers
    scope = request("POST", "/v1/streams/web/events")
    assert authorized(authorize, scope, {"x-token": "s3cret"}, b"{}", 1_000_000) is None
    wrong = refusal(authorized, authorize, scope, {"x-token": "guess"}, b"{}", 1_000_000)
    assert (wrong.status, wrong.reason) == (401, "invalid_token")
    missing = refusal(authorized, authorize, scope, {}, b"{}", 1_000_000)
    assert missing.reason == "missing_token"


def test_authorize_sees_the_peer_address() -> None:
    config = source(auth={"type": "ip_allow", "cidrs": ["192.0.2.0/24"]})
    authorize = Authorize(SourceAuth(config, "web"))
    inside = request("POST", client=("192.0.2.7", 1))
    assert authorized(authorize, inside, {}, b"", 0) is None
    outside = refusal(
        authorized, authorize, request("POST", client=("198.51.100.1", 1)), {}, b"", 0
    )
    assert outside.status == 403  # only an address check failed


# -- limit ------------------------------------------------------------------------------------


def key(rate: float | None, key_id: int = 1) -> Principal:
    return Principal("k", {}, ApiKey(key_id, "web", "k", "hr_x", rate, 0, None))


def test_limit_shares_the_source_rate_through_the_data_directory(tmp_path: Path) -> None:
    # two workers' stages over one data directory: one budget of 4, not 4 each (nor 2 each)
    first = Limit("web", RateLimit(rate=0.001, burst=4), workers=2, data_dir=tmp_path)
    second = Limit("web", RateLimit(rate=0.001, burst=4), workers=2, data_dir=tmp_path)
    for limit in (first, second, first, second):
        limit(None)
    refused = refusal(first, None)
    assert (refused.status, refused.reason) == (429, "rate_limited")
    assert refused.detail["retry_after"] >= 1
    assert refusal(second, None).reason == "rate_limited"
    Limit("other", RateLimit(rate=0.001, burst=1), workers=2, data_dir=tmp_path)(None)


def test_without_a_data_directory_each_worker_enforces_its_share() -> None:
    limit = Limit("web", RateLimit(rate=4, burst=4), workers=2)  # this worker: 2/s, burst 2
    limit(None)
    limit(None)
    assert refusal(limit, None).reason == "rate_limited"


def test_an_api_keys_rate_is_its_own_and_spares_the_sources(tmp_path: Path) -> None:
    limit = Limit("web", RateLimit(rate=0.001, burst=100), workers=1, data_dir=tmp_path)
    limit(key(1.0))  # the key's burst: one request
    assert refusal(limit, key(1.0)).reason == "rate_limited"
    for _ in range(98):
        limit(None)
    limit(key(1.0, key_id=2))  # another key has its own bucket
    # 100 taken from the source's burst: the refused request took none of them
    assert refusal(limit, None).reason == "rate_limited"
    assert limit._key_bucket(1, 50.0).rate == 50.0  # the rate changed: the same slot, refilling
    assert limit.keys[1][0] == 50.0  # at the new rate


def test_without_a_source_rate_only_keys_are_limited(tmp_path: Path) -> None:
    limit = Limit("web", None, workers=1, data_dir=tmp_path)
    for _ in range(100):
        limit(None)
        limit(key(None))


# -- decode -----------------------------------------------------------------------------------


def test_decode_builds_values_only_when_a_later_stage_needs_them() -> None:
    plain = Decode(source(), LIMITS, None, mapped=False)
    assert (plain.need_values, plain.skimmer) == (False, None)
    schema = SchemaCheck(source(schema=SCHEMA))
    assert schema.fast is not None
    fast = Decode(source(schema=SCHEMA), LIMITS, schema, mapped=False)
    assert (fast.need_values, fast.skimmer) == (False, schema.fast)
    for needing in (
        Decode(source(schema=SCHEMA, id_field="n"), LIMITS, schema, mapped=False),
        Decode(source(schema=SCHEMA), LIMITS, schema, mapped=True),
        Decode(source(id_field="n"), LIMITS, None, mapped=False),
    ):
        assert needing.need_values and needing.skimmer is None
    complex_schema = SchemaCheck(source(schema={**SCHEMA, "minProperties": 1}))
    assert complex_schema.fast is None
    full = Decode(source(), LIMITS, complex_schema, mapped=False)
    assert full.need_values and full.skimmer is None


def test_decode_decompresses_then_parses_in_the_sources_format() -> None:
    decode = Decode(source(), LIMITS, None, mapped=False)
    body = decode.decompress(gzip.compress(b'[{"a":1},{"a":2}]'), None)  # gzip by its bytes
    skimmed = decode(body, "application/json")
    assert (skimmed.fmt, skimmed.count, skimmed.events) == (FORMAT_ARRAY, 2, None)
    assert decode(b'{"a":1}', None).fmt == FORMAT_OBJECT
    ndjson = Decode(source(format="ndjson"), LIMITS, None, mapped=True)
    lines = ndjson(b'{"a":1}\n{"a":2}\n', None)
    assert (lines.fmt, lines.events) == (FORMAT_NDJSON, [{"a": 1}, {"a": 2}])
    assert refusal(decode, b"[1]", None).reason == "not_an_object"
    small = Decode(source(), Limits(max_decompressed_bytes=10), None, mapped=False)
    too_big = refusal(small.decompress, gzip.compress(b"x" * 100), "gzip")
    assert too_big.reason == "decompressed_too_large"


# -- validate ---------------------------------------------------------------------------------


async def settled(keeper: BadRowKeeper) -> None:
    while keeper.pending:
        await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_validate_refuses_the_request_by_default(data_dir: Path) -> None:
    keeper = BadRowKeeper(BadRowStore(data_dir))
    validate = Validate("web", SchemaCheck(source(schema=SCHEMA)), "reject_request", keeper)
    ok = decoded({"action": "view"})
    assert validate(ok, "clicks", 1) == (ok, [])  # unchanged: the very same body
    refused = refusal(validate, decoded({"action": "view"}, {"n": 1}, {"action": 2}), "clicks", 1)
    assert (refused.status, refused.reason) == (400, "schema_violation")
    assert refused.message == "2 of 3 event(s) do not match the schema"
    assert [e["index"] for e in refused.detail["errors"]] == [1, 2]
    assert keeper.pending == set()  # the pipeline keeps the whole request, not the stage


@pytest.mark.anyio
async def test_keep_valid_stores_the_valid_and_keeps_each_invalid_one(data_dir: Path) -> None:
    store = BadRowStore(data_dir)
    keeper = BadRowKeeper(store)
    validate = Validate("web", SchemaCheck(source(schema=SCHEMA)), "keep_valid", keeper)
    kept, rejected = validate(decoded({"action": "view"}, {"n": "x"}), "clicks", 42)
    assert (kept.fmt, kept.count, kept.events) == (FORMAT_ARRAY, 1, [{"action": "view"}])
    assert json.loads(kept.body) == [{"action": "view"}]
    assert [r["index"] for r in rejected] == [1, 1]  # two problems of event 1
    await settled(keeper)
    (row,) = store.find()
    assert (row.source, row.stream, row.reason, row.received_at_us) == (
        "web", "clicks", "schema_violation", 42
    )  # fmt: skip
    assert json.loads(row.raw) == {"n": "x"}


def test_validate_drops_unknown_fields_and_passes_skimmed_bodies(data_dir: Path) -> None:
    keeper = BadRowKeeper(BadRowStore(data_dir))
    check = SchemaCheck(source(schema=SCHEMA, unknown_fields="drop"))
    validate = Validate("web", check, "reject_request", keeper)
    stored, rejected = validate(decoded({"action": "view", "extra": 1}), "clicks", 1)
    assert stored.events == [{"action": "view"}] and json.loads(stored.body) == stored.events
    assert rejected == []
    skimmed = Decoded(FORMAT_ARRAY, 1, b'[{"action":"view"}]', None)
    assert validate(skimmed, "clicks", 1) == (skimmed, [])


# -- assign ids -------------------------------------------------------------------------------


def test_without_explicit_ids_they_derive_from_the_base() -> None:
    base = new_base_id(0)
    assert AssignIds(source())(decoded({"a": 1}), {"webhook-id": "m"}, None, base) is None
    assert len(event_ids(base, 2)) == 2


def test_an_id_header_names_the_request() -> None:
    assign = AssignIds(source(id_header="Webhook-Id"))
    assert assign(decoded({"a": 1}), {"webhook-id": "msg_1"}, None, 0) == ["msg_1"]
    two = decoded({"a": 1}, {"a": 2})
    assert assign(two, {"webhook-id": "msg_2"}, None, 0) == ["msg_2:0", "msg_2:1"]
    assert assign(two, {}, None, 0) is None  # not sent: generated ids


def test_a_signed_delivery_id_counts_only_from_a_passed_signature() -> None:
    assign = AssignIds(source())
    signed = Principal(delivery_id_header="webhook-id")
    assert assign(decoded({"a": 1}), {"webhook-id": "msg_9"}, signed, 0) == ["msg_9"]
    assert assign(decoded({"a": 1}), {"webhook-id": "msg_9"}, Principal(), 0) is None


def test_an_id_field_names_each_event_or_falls_back_to_generated_ids() -> None:
    base = new_base_id(0)
    events = decoded({"order_id": 42}, {"other": 1}, {"order_id": {"x": 1}}, {"order_id": "a"})
    ids = AssignIds(source(id_field="order_id"))(events, {}, None, base)
    generated = event_ids(base, 4)
    assert ids == ["42", generated[1], generated[2], "a"]


# -- map --------------------------------------------------------------------------------------


def test_the_map_reshapes_events_with_request_metadata(data_dir: Path) -> None:
    config = source(map={"rename": {"amt": "amount"}, "copy": {
        "ip": "$client_ip", "agent": "$header.User-Agent", "by": "$principal", "stream": "$stream",
    }})  # fmt: skip
    assert config.map is not None
    stage = MapEvents("web", Mapper(config.map, data_dir))
    assert stage.header_names == frozenset({b"user-agent"})
    scope = request("POST", client=("203.0.113.9", 1))
    out = stage(decoded({"amt": 1}), scope, "orders", Principal("shop"), 0, {"user-agent": "ua"})
    expected = {"amount": 1, "ip": "203.0.113.9", "agent": "ua", "by": "shop", "stream": "orders"}
    assert (out.fmt, out.count, out.events) == (FORMAT_ARRAY, 1, [expected])
    assert json.loads(out.body) == [expected]


def test_a_map_that_cannot_apply_is_a_mapping_error(data_dir: Path) -> None:
    config = source(map={"set": {"system": "shop"}})
    assert config.map is not None
    stage = MapEvents("web", Mapper(config.map, data_dir))
    unencodable = decoded({"n": 1})
    assert unencodable.events is not None
    unencodable.events[0]["n"] = 1j  # no JSON body decodes to it: the stage's last line of defence
    failed = refusal(stage, unencodable, request("POST"), "s", None, 0, {})
    assert (failed.status, failed.reason) == (400, "mapping_error")


# -- commit -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_commit_writes_the_request_as_the_buffer_keeps_it(data_dir: Path) -> None:
    writer = open_buffer(LocalBuffer(), data_dir).writer("w0")
    writer.start()
    base = new_base_id(1)
    try:
        await Commit("web", writer)(decoded({"a": 1}, {"a": 2}), "clicks", 1_000, base, None)
        await Commit("web", writer)(decoded({"b": 1}), "clicks", 2_000, base + 1, ["mine"])
    finally:
        await writer.stop()
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 20).items
    first, second = (item.request for item in items)
    assert (first.stream, first.source, first.count, first.received_at_us) == (
        "clicks", "web", 2, 1_000
    )  # fmt: skip
    assert first.base_id == base.to_bytes(16, "big") and first.ids is None
    assert [e.id for e in expand_events(first)] == event_ids(base, 2)
    assert [(e.id, e.data) for e in expand_events(second)] == [("mine", {"b": 1})]


@pytest.mark.anyio
async def test_commit_into_a_full_buffer_raises_buffer_full(data_dir: Path) -> None:
    writer = open_buffer(LocalBuffer(max_bytes=1024), data_dir).writer("w0")
    writer.start()
    try:
        await Commit("web", writer)(decoded({"pad": "x" * 2000}), "s", 1, new_base_id(), None)
        writer.guard.refresh()  # type: ignore[attr-defined]  # the local buffer measures now
        with pytest.raises(BufferFull):
            await Commit("web", writer)(decoded({"a": 1}), "s", 2, new_base_id(), None)
    finally:
        await writer.stop()
