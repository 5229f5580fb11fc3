"""Suite item 11, fuzz: schemathesis against the OpenAPI document a running server serves (no
5xx, no answer outside the document: status codes, content types and bodies as described), and
a hypothesis fuzz target for the ingest stages decode → authorize → validate, which may only
ever accept or refuse with a known reason.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import re
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.config.load import parse_pipeline
from headrace.ingest.badrows import REASONS
from headrace.server.app import WorkerApp
from support.serverproc import ServerProcess

SCHEMA = {
    "type": "object",
    "properties": {
        "requestid": {"type": "string"},
        "action": {"enum": ["click", "view"]},
        "n": {"type": "integer", "minimum": 0},
    },
    "required": ["requestid", "action"],
}
PIPELINE = {
    "sources": {
        "clicks": {"type": "http", "auth": {"type": "token", "secrets": ["t0ken"]},
                   "on_invalid": "keep_valid", "schema": SCHEMA},
        "strict": {"type": "http", "path": "/strict", "schema": SCHEMA,
                   "unknown_fields": "reject", "id_field": "requestid",
                   "auth": {"type": "hmac", "preset": "github", "secrets": ["gh"]}},
        "open": {"type": "http", "path": "/webhooks/{stream}", "format": "ndjson"},
    },
    "sinks": {"lake": {"type": "lake", "inputs": ["clicks", "strict", "open"]}},
}  # fmt: skip
# schemathesis cannot sign a body: there the strict source takes requests unsigned
SERVED = {**PIPELINE, "sources": {**PIPELINE["sources"], "strict": {
    k: v for k, v in PIPELINE["sources"]["strict"].items() if k != "auth"}}}  # fmt: skip
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_schemathesis_finds_no_server_error_or_schema_violation(
    tmp_path: Path, scale: Any, record: Callable[..., Any]
) -> None:
    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps(SERVED))
    server = ServerProcess(tmp_path / "data", config=config).start()
    examples = scale.pick(25, 300)
    try:
        document = httpx.get(f"{server.url}/openapi.json", timeout=5).json()
        operations = sum(len(methods) for methods in document["paths"].values())
        st_cli = Path(sys.executable).with_name("st")
        result = subprocess.run(
            [str(st_cli), "run", f"{server.url}/openapi.json", "--checks", CHECKS,
             "--max-examples", str(examples), "--request-timeout", "10",
             "-H", "Authorization: t0ken", "--seed", "15"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        log = server.log()
    finally:
        stopped = server.stop()
    calls = re.findall(r"(\d+) (?:generated|test cases)", result.stdout)
    record(load=f"schemathesis, {operations} operations x up to {examples} examples",
           faults="generated requests (positive and negative)", acknowledged=None,
           checks=CHECKS, cases=calls[-1] if calls else "?",
           exit_code=result.returncode)  # fmt: skip
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Traceback" not in log, log[max(0, log.find("Traceback") - 2000) :][:6000]
    assert stopped == 0


# -- decode -> authorize -> validate ----------------------------------------------------------

KNOWN = set(REASONS) | {
    "missing_signature", "invalid_signature", "body_too_large", "unsupported_encoding",
    "invalid_stream", "rate_limited", "unknown_stream", "method_not_allowed", "missing_token",
    "invalid_token", "unauthorized",
}  # fmt: skip
EVENT = st.fixed_dictionaries(
    {"requestid": st.text(max_size=8), "action": st.sampled_from(["click", "view", "buy"])},
    optional={"n": st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.none()),
              "extra": st.text(max_size=3)},
)  # fmt: skip
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A body as a sender, a broken sender or an attacker might send it."""
    kind = draw(st.sampled_from(["object", "array", "ndjson", "json", "bytes", "text"]))
    if kind == "object":
        raw = json.dumps(draw(EVENT)).encode()
    elif kind == "array":
        raw = json.dumps(draw(st.lists(EVENT, max_size=5))).encode()
    elif kind == "ndjson":
        raw = "\n".join(json.dumps(e) for e in draw(st.lists(EVENT, max_size=5))).encode()
    elif kind == "json":
        raw = json.dumps(draw(JSONISH)).encode()
    elif kind == "text":
        raw = draw(st.text(max_size=64)).encode("utf-8", "surrogatepass")
    else:
        raw = draw(st.binary(max_size=128))
    if draw(st.integers(0, 9)) == 0 and raw:  # one byte cut or flipped
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :]
    packing = draw(st.sampled_from(["plain", "plain", "gzip", "deflate", "truncated-gzip"]))
    if packing == "gzip":
        raw = gzip.compress(raw)
    elif packing == "deflate":
        raw = zlib.compress(raw)
    elif packing == "truncated-gzip":
        raw = gzip.compress(raw)[: draw(st.integers(0, 20))]
    return raw


def test_decode_authorize_validate_only_accept_or_refuse_with_a_known_reason(
    data_dir: Path, scale: Any, record: Callable[..., Any]
) -> None:
    app = WorkerApp(parse_pipeline(json.dumps(PIPELINE)), data_dir)
    outcomes: dict[str, int] = {}
    unknown: list[tuple[int, str, bytes]] = []
    loop = asyncio.new_event_loop()
    loop.run_until_complete(app.startup())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")

    @settings(max_examples=scale.pick(300, 3000), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        body=bodies(),
        target=st.sampled_from(["/v1/streams/clicks/events", "/strict", "/webhooks/s1",
                                "/webhooks/bad%20name", "/v1/streams/nothing/events"]),
        auth=st.sampled_from(["right", "wrong", "none"]),
        encoding=st.sampled_from([None, "gzip", "deflate", "br", "identity"]),
        content_type=st.sampled_from([None, "application/json", "application/x-ndjson",
                                      "text/plain", "application/json; charset=latin-1"]),
    )  # fmt: skip
    def run(
        body: bytes, target: str, auth: str, encoding: str | None, content_type: str | None
    ) -> None:
        headers: dict[str, str] = {}
        if encoding:
            headers["content-encoding"] = encoding
        if content_type:
            headers["content-type"] = content_type
        if auth != "none":
            secret = b"gh" if auth == "right" else b"guess"
            headers["authorization"] = "t0ken" if auth == "right" else "guess"
            headers["x-hub-signature-256"] = (
                "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            )
        answer = loop.run_until_complete(client.post(target, content=body, headers=headers))
        reason = "accepted" if answer.status_code < 300 else answer.json().get("error", "?")
        outcomes[reason] = outcomes.get(reason, 0) + 1
        if not (answer.status_code < 300 or (400 <= answer.status_code < 500 and reason in KNOWN)):
            unknown.append((answer.status_code, reason, body))

    try:
        run()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(app.shutdown())
        loop.close()
    total = sum(outcomes.values())
    record(load=f"{total} fuzzed POSTs through decode, authorize, validate",
           faults="bad JSON/NDJSON, wrong types, flipped bytes, bad compression, bad auth",
           acknowledged=outcomes.get("accepted", 0), outcomes=outcomes)  # fmt: skip
    assert unknown == []
    assert outcomes.get("accepted", 0) > 0 and len(outcomes) > 3
