from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.authorizers import RequestFacts, SourceAuth
from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.records import expand_events
from headrace.config.load import parse_pipeline
from headrace.config.sources import HttpSource
from headrace.errors import RequestRejected
from headrace.server.app import WorkerApp

# The Standard Webhooks specification's reference vector.
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# GitHub's documented example ("Validating webhook deliveries").
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def source_auth(*auth: dict[str, Any]) -> SourceAuth:
    return SourceAuth(HttpSource.model_validate({"type": "http", "auth": list(auth)}))


def facts(headers: dict[str, str], body: bytes, client: str | None = "127.0.0.1") -> RequestFacts:
    return RequestFacts({k.lower(): v for k, v in headers.items()}, body, client)


def refusal(auth: SourceAuth, request: RequestFacts, now: float = 0) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        auth.verify(request, now)
    return info.value


def sw_headers(
    signature: str = SW_SIGNATURE, ts: int = SW_TS, msg_id: str = SW_ID
) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


STANDARD = {"type": "hmac", "preset": "standard-webhooks", "secrets": [SW_SECRET]}


def test_standard_webhooks_reference_vector() -> None:
    source_auth(STANDARD).verify(facts(sw_headers(), SW_BODY), SW_TS)
    several = f"v1,bm90IHRoaXMgb25l {SW_SIGNATURE} v2,ignored"
    source_auth(STANDARD).verify(facts(sw_headers(several), SW_BODY), SW_TS)


@pytest.mark.parametrize(("offset", "ok"), [(300, True), (301, False), (-300, True), (-301, False)])
def test_standard_webhooks_timestamp_window_both_ways(offset: int, ok: bool) -> None:
    request = facts(sw_headers(), SW_BODY)
    if ok:
        source_auth(STANDARD).verify(request, SW_TS + offset)
    else:
        assert (
            refusal(source_auth(STANDARD), request, SW_TS + offset).reason
            == "timestamp_out_of_tolerance"
        )


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (sw_headers(), SW_BODY + b" ", "invalid_signature"),  # tampered body
        (sw_headers(msg_id="msg_other"), SW_BODY, "invalid_signature"),  # id is signed
        ({"webhook-id": SW_ID, "webhook-timestamp": str(SW_TS)}, SW_BODY, "missing_signature"),
        ({"webhook-id": SW_ID, "webhook-signature": SW_SIGNATURE}, SW_BODY, "missing_timestamp"),
        (
            {"webhook-timestamp": str(SW_TS), "webhook-signature": SW_SIGNATURE},
            SW_BODY,
            "missing_delivery_id",
        ),
        (sw_headers(ts="soon"), SW_BODY, "invalid_timestamp"),  # type: ignore[arg-type]
        (sw_headers(ts="\u00b9614265330"), SW_BODY, "invalid_timestamp"),  # type: ignore[arg-type]
    ],
)
def test_standard_webhooks_refusals(headers: dict[str, str], body: bytes, reason: str) -> None:
    refused = refusal(source_auth(STANDARD), facts(headers, body), SW_TS)
    assert (refused.status, refused.reason) == (401, reason)


def test_rotation_accepts_either_live_secret() -> None:
    rotating = {
        **STANDARD,
        "secrets": [
            "whsec_" + base64.b64encode(b"a-new-key-of-thirty-two-bytes!!!").decode(),
            SW_SECRET,
        ],
    }
    source_auth(rotating).verify(facts(sw_headers(), SW_BODY), SW_TS)
    retired = {
        **STANDARD,
        "secrets": ["whsec_" + base64.b64encode(b"a-new-key-of-thirty-two-bytes!!!").decode()],
    }
    assert (
        refusal(source_auth(retired), facts(sw_headers(), SW_BODY), SW_TS).reason
        == "invalid_signature"
    )


def test_github_documented_example() -> None:
    auth = source_auth({"type": "hmac", "preset": "github", "secrets": [GH_SECRET]})
    auth.verify(facts({"X-Hub-Signature-256": GH_SIGNATURE}, GH_BODY), 0)
    assert (
        refusal(auth, facts({"X-Hub-Signature-256": GH_SIGNATURE}, b"Hello, World?")).reason
        == "invalid_signature"
    )
    assert (
        refusal(auth, facts({"X-Hub-Signature-256": GH_SIGNATURE[7:]}, GH_BODY)).reason
        == "invalid_signature"
    )
    assert auth.delivery_id_header == "x-github-delivery"


# ControlShift's documented scheme: 'sha256:' + OpenSSL::HMAC.hexdigest('SHA256', secret, body),
# the vector computed with `openssl dgst -sha256 -hmac cs-webhook-secret` over these exact bytes
# (a body as ControlShift sends it, "&" JSON-escaped as \u0026).
CS_SECRET = "cs-webhook-secret"
CS_BODY = (
    b'{"type":"data.full_table_exported","data":{"url":"https://s3.amazonaws.com/'
    b"agra-data-exports-production/unique_signatures_full_1.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    b'\\u0026X-Amz-Expires=86400\\u0026X-Amz-Signature=4f2b9c","table":"signatures"}}'
)
CS_SIGNATURE = "sha256:76f99be56b88dc18fde9342c6364b9011c2fb5e9455cb07923b4d43e480dee19"


def test_controlshift_preset_takes_the_documented_colon_form() -> None:
    auth = source_auth({"type": "hmac", "preset": "controlshift", "secrets": [CS_SECRET]})
    auth.verify(facts({"X-ControlShift-Webhook-Signature": CS_SIGNATURE}, CS_BODY), 0)
    digest = CS_SIGNATURE.removeprefix("sha256:")
    for wrong in (f"sha256={digest}", digest, f"sha1:{digest}", f"sha256:{digest[:-1]}0"):
        assert (
            refusal(auth, facts({"X-ControlShift-Webhook-Signature": wrong}, CS_BODY)).reason
            == "invalid_signature"
        ), wrong
    # one byte of the body changed: the signature is over the raw body exactly as sent
    changed = facts({"X-ControlShift-Webhook-Signature": CS_SIGNATURE}, CS_BODY + b" ")
    assert refusal(auth, changed).reason == "invalid_signature"


def test_generic_hmac_with_base64_sha512_and_a_signed_timestamp() -> None:
    config = {"type": "hmac", "secrets": ["k"], "header": "X-Sig", "algorithm": "sha512",
              "encoding": "base64", "prefix": "", "timestamp_header": "X-Ts"}  # fmt: skip
    signature = base64.b64encode(hmac.new(b"k", b"1700000000.{}", hashlib.sha512).digest()).decode()
    auth = source_auth(config)
    auth.verify(facts({"X-Sig": signature, "X-Ts": "1700000000"}, b"{}"), 1_700_000_100)
    late = refusal(auth, facts({"X-Sig": signature, "X-Ts": "1700000000"}, b"{}"), 1_700_000_301)
    assert late.reason == "timestamp_out_of_tolerance"


def test_tokens_any_of_several_and_specific_refusals() -> None:
    auth = source_auth({"type": "token", "secrets": ["ALLOW=ORDERAPP", "ALLOW=NEXT"]})
    auth.verify(facts({"Authorization": "ALLOW=ORDERAPP"}, b""), 0)
    auth.verify(facts({"Authorization": "ALLOW=NEXT"}, b""), 0)
    assert refusal(auth, facts({"Authorization": "ALLOW=ORDERAP"}, b"")).reason == "invalid_token"
    assert refusal(auth, facts({}, b"")).reason == "missing_token"


def test_any_authorizer_may_pass_and_address_only_failures_are_403() -> None:
    auth = source_auth({"type": "ip_allow", "cidrs": ["10.0.0.0/8", "2001:db8::/32"]},
                       {"type": "token", "secrets": ["t"]})  # fmt: skip
    auth.verify(facts({}, b"", client="10.1.2.3"), 0)
    auth.verify(facts({}, b"", client="2001:db8::1"), 0)
    auth.verify(facts({"Authorization": "t"}, b"", client="192.0.2.1"), 0)
    both = refusal(auth, facts({}, b"", client="192.0.2.1"))
    assert (both.status, both.reason, both.detail["failed"]) == (
        401, "unauthorized", ["ip_allow: forbidden_address", "token: missing_token"],
    )  # fmt: skip
    only_ip = refusal(
        source_auth({"type": "ip_allow", "cidrs": ["10.0.0.0/8"]}),
        facts({}, b"", client="192.0.2.1"),
    )
    assert only_ip.status == 403


@settings(max_examples=300, deadline=None)
@given(
    part=st.sampled_from(["body", "id", "timestamp", "signature"]),
    position=st.integers(min_value=0, max_value=200),
    byte=st.integers(min_value=0, max_value=255),
    delete=st.booleans(),
)
def test_no_mutation_of_a_signed_request_is_accepted(
    part: str, position: int, byte: int, delete: bool
) -> None:
    values = {"body": SW_BODY, "id": SW_ID.encode(), "timestamp": str(SW_TS).encode(),
              "signature": SW_SIGNATURE.encode()}  # fmt: skip
    original = values[part]
    index = position % len(original)
    mutated = (
        original[:index] + original[index + 1 :]
        if delete
        else original[:index] + bytes([byte]) + original[index + 1 :]
    )
    if mutated == original:
        return
    values[part] = mutated
    headers = {"webhook-id": values["id"].decode("latin-1"), "webhook-timestamp": values["timestamp"].decode("latin-1"),
               "webhook-signature": values["signature"].decode("latin-1")}  # fmt: skip
    with pytest.raises(RequestRejected):
        source_auth(STANDARD).verify(facts(headers, values["body"]), SW_TS)


SIGNED = f"""
sources:
  hooks:
    type: http
    auth: {{type: hmac, preset: standard-webhooks, secrets: ["{SW_SECRET}"], tolerance: 100000000d}}
sinks:
  lake: {{type: lake, inputs: [hooks]}}
"""


@pytest.mark.anyio
async def test_signed_deliveries_over_http_keep_their_delivery_id(data_dir: Path) -> None:
    app = WorkerApp(parse_pipeline(SIGNED), data_dir)
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            url = "/v1/streams/hooks/events"
            first = await client.post(url, content=SW_BODY, headers=sw_headers())
            again = await client.post(
                url, content=SW_BODY, headers=sw_headers()
            )  # a retried delivery
            forged = await client.post(url, content=b'{"test": 1}', headers=sw_headers())
            assert (first.status_code, again.status_code) == (202, 202)
            assert first.json()["ids"] == again.json()["ids"] == [SW_ID]  # the sink stores it once
            assert (forged.status_code, forged.json()["error"]) == (401, "invalid_signature")
            metrics = (await client.get("/metrics")).text
            assert (
                'headrace_requests_rejected_total{reason="invalid_signature",source="hooks"} 1'
                in metrics
            )
    finally:
        await app.shutdown()
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 20).items
    events = [e for item in items for e in expand_events(item.request)]
    assert [(e.id, e.may_repeat) for e in events] == [(SW_ID, True), (SW_ID, True)]


def test_huge_timestamps_are_refused_not_crashed_on() -> None:
    for ts in ("9" * 400, "9" * 5000):
        headers = {"webhook-id": SW_ID, "webhook-timestamp": ts, "webhook-signature": SW_SIGNATURE}
        assert (
            refusal(source_auth(STANDARD), facts(headers, SW_BODY), SW_TS).reason
            == "invalid_timestamp"
        )


@pytest.mark.parametrize("secret", ["whsec_", "whsec_c2hvcnQ=", "whsec_not base64!"])
def test_weak_or_malformed_standard_webhooks_secrets_are_config_errors(secret: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="standard-webhooks secret"):
        source_auth({**STANDARD, "secrets": [secret]})


MIXED = f"""
sources:
  hooks:
    type: http
    auth:
      - {{type: hmac, preset: standard-webhooks, secrets: ["{SW_SECRET}"], tolerance: 100000000d}}
      - {{type: token, secrets: ["other-way-in"]}}
    rate_limit: {{rate: 1, burst: 1}}
sinks:
  lake: {{type: lake, inputs: [hooks]}}
"""


@pytest.mark.anyio
async def test_refused_requests_neither_use_the_rate_nor_become_bad_rows_nor_claim_ids(
    data_dir: Path,
) -> None:
    app = WorkerApp(parse_pipeline(MIXED), data_dir)
    await app.startup()
    url = "/v1/streams/hooks/events"
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            for _ in range(3):  # an attacker without credentials, with an oversized body
                refused = await client.post(url, content=b"[" + b"1," * 10 + b"1]")
                assert refused.status_code == 401
            # the token holder's webhook-id is not trusted: no signature covered it
            by_token = await client.post(
                url, json={"a": 1}, headers={"authorization": "other-way-in", "webhook-id": SW_ID}
            )
            assert by_token.status_code == 202 and by_token.json()["ids"] != [SW_ID]
    finally:
        await app.shutdown()
    assert app.ingest.badrows.find() == []
