"""Suite item 8, auth: mutated signatures get nothing in, replayed webhook ids are stored once,
an API key's rate holds across every worker of a server while another key is unaffected, and
no read or metrics endpoint answers a DNS-rebinding ``Host``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.authorizers import RequestFacts, SourceAuth
from headrace.config.sources import HttpSource
from headrace.errors import RequestRejected
from headrace.storage.api_keys import KeyStore
from headrace.web.access import ADMIN_TOKEN_ENV
from support.serverproc import ServerProcess

NOW = 1_700_000_000
WHSEC = "whsec_" + base64.b64encode(b"sixteen byte key" * 2).decode()
SECRET = "s3cret-signing-key"


# -- signatures under mutation ----------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """A signed scheme: its authorizer config and how a sender signs a request."""

    name: str
    config: dict[str, Any]
    sign: Callable[[str, bytes, str, str], dict[str, str]]  # secret, body, id, ts -> headers


def _standard(secret: str, body: bytes, delivery: str, ts: str) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{delivery}.{ts}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(mac).decode()
    return {"webhook-id": delivery, "webhook-timestamp": ts, "webhook-signature": signature}


def _github(secret: str, body: bytes, delivery: str, ts: str) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": "sha256=" + mac, "X-GitHub-Delivery": delivery}


def _controlshift(secret: str, body: bytes, delivery: str, ts: str) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-ControlShift-Webhook-Signature": "sha256:" + mac}


def _generic(secret: str, body: bytes, delivery: str, ts: str) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha512).digest()
    return {"X-Sig": "v=" + base64.b64encode(mac).decode(), "X-Ts": ts}


SCHEMES = [
    Scheme("standard-webhooks", {"preset": "standard-webhooks", "secrets": [WHSEC]}, _standard),
    Scheme("github", {"preset": "github", "secrets": [SECRET]}, _github),
    Scheme("controlshift", {"preset": "controlshift", "secrets": [SECRET]}, _controlshift),
    Scheme("generic", {"preset": "generic", "secrets": [SECRET], "header": "X-Sig",
                       "algorithm": "sha512", "encoding": "base64", "prefix": "v=",
                       "timestamp_header": "X-Ts"}, _generic),
]  # fmt: skip
AUTHS = {
    s.name: SourceAuth(HttpSource.model_validate({"type": "http", "auth": {"type": "hmac", **s.config}}))
    for s in SCHEMES
}  # fmt: skip
SECRET_OF = {s.name: s.config["secrets"][0] for s in SCHEMES}
MUTATIONS = ["body", "timestamp", "id", "signature_case", "prefix_case", "secret", "truncated"]


def passes(scheme: str, headers: dict[str, str], body: bytes) -> bool:
    facts = RequestFacts({k.lower(): v for k, v in headers.items()}, body, "127.0.0.1")
    try:
        AUTHS[scheme].verify(facts, NOW)
    except RequestRejected:
        return False
    return True


def mutate(
    scheme: Scheme, kind: str, body: bytes, data: st.DataObject
) -> tuple[dict[str, str], bytes] | None:
    """A signed request changed in one way that must break it (``None``: the change does not
    apply to this scheme, or changed nothing)."""
    ts, delivery, secret = str(NOW), "msg_2Kp9", SECRET_OF[scheme.name]
    if kind == "body":
        at = data.draw(st.integers(0, len(body)))
        changed = body[:at] + bytes([data.draw(st.integers(0, 255))]) + body[at + 1 :]
        return (scheme.sign(secret, body, delivery, ts), changed) if changed != body else None
    if kind == "timestamp":
        if "timestamp" not in json.dumps(scheme.config) and scheme.name != "standard-webhooks":
            return None
        shift = data.draw(st.integers(-(10**6), 10**6).filter(lambda n: n != 0))
        headers = scheme.sign(secret, body, delivery, ts)
        name = "webhook-timestamp" if scheme.name == "standard-webhooks" else "X-Ts"
        return {**headers, name: str(NOW + shift)}, body  # signed for NOW, claims another time
    if kind == "id":
        if scheme.name != "standard-webhooks":
            return None  # the others do not sign their delivery id
        other = data.draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=20))
        if other == delivery:
            return None
        return {**scheme.sign(secret, body, delivery, ts), "webhook-id": other}, body
    headers = scheme.sign(secret, body, delivery, ts)
    header = next(k for k in headers if "sig" in k.lower())
    value = headers[header]
    if kind == "signature_case":  # base64 is case-sensitive; hex is not, and is compared lowered
        if scheme.name in ("github", "controlshift"):
            return None
        swapped = value[: value.index(",") + 1 if "," in value else 2] + value[3:].swapcase()
        return ({**headers, header: swapped}, body) if swapped != value else None
    if kind == "prefix_case":
        if scheme.name == "standard-webhooks":
            return None
        return {**headers, header: value[:2].upper() + value[2:]}, body  # "SHA256=", "V="
    if kind == "secret":
        wrong = data.draw(st.text(min_size=1, max_size=40).filter(lambda s: s != secret))
        if scheme.name == "standard-webhooks":
            wrong = "whsec_" + base64.b64encode(wrong.encode().ljust(16, b"x")).decode()
            if wrong == secret:
                return None
        return scheme.sign(wrong, body, delivery, ts), body
    cut = data.draw(st.integers(1, len(value) - 1))
    return {**headers, header: value[:cut]}, body


def test_mutated_signatures_are_accepted_zero_times(scale: Any, record: Callable[..., Any]) -> None:
    examples = scale.pick(400, 3000)
    tried: dict[str, int] = {}
    accepted: list[tuple[str, str, dict[str, str], bytes]] = []
    renamed_passed = runs = 0

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(
        scheme=st.sampled_from(SCHEMES),
        kind=st.sampled_from(MUTATIONS),
        body=st.binary(min_size=1, max_size=512),
        data=st.data(),
    )
    def run(scheme: Scheme, kind: str, body: bytes, data: st.DataObject) -> None:
        nonlocal renamed_passed, runs
        runs += 1
        signed = scheme.sign(SECRET_OF[scheme.name], body, "msg_2Kp9", str(NOW))
        # the control: the request as signed passes, and header names are case-insensitive
        assert passes(scheme.name, signed, body)
        renamed = {data.draw(st.sampled_from([k.upper(), k.lower(), k.title()])): v
                   for k, v in signed.items()}  # fmt: skip
        renamed_passed += passes(scheme.name, renamed, body)
        mutated = mutate(scheme, kind, body, data)
        if mutated is None:
            return
        tried[kind] = tried.get(kind, 0) + 1
        if passes(scheme.name, *mutated):
            accepted.append((scheme.name, kind, *mutated))

    run()
    total = sum(tried.values())
    record(load=f"{total} mutated signed requests over 4 schemes",
           faults="body, timestamp, id, signature case, prefix case, secret, truncation",
           acknowledged=len(accepted), mutations=tried)  # fmt: skip
    assert accepted == []
    assert renamed_passed == runs  # re-cased header names are the same request
    assert total >= examples // 2 and len(tried) == len(MUTATIONS)


# -- one server, two workers: replays and rate limits -----------------------------------------

HOOKS_SECRET = WHSEC


def pipeline() -> dict[str, Any]:
    return {
        "api": {"read_tokens": ["r3ad"]},
        "sources": {
            "hooks": {"type": "http", "auth": {"type": "hmac", "preset": "standard-webhooks",
                                               "secrets": [HOOKS_SECRET]}},
            "keyed": {"type": "http", "auth": {"type": "api_key"}},
        },
        "sinks": {"lake": {"type": "lake", "inputs": ["hooks", "keyed"]}},
    }  # fmt: skip


@pytest.fixture  # one server a test: tests/conftest.py kills what a test leaves running
def served(
    tmp_path: Path,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    root = tmp_path
    config = root / "pipeline.json"
    config.write_text(json.dumps(pipeline()))
    data = root / "data"
    store = KeyStore(data)
    keys = {
        "limited": store.create("keyed", "limited", 20.0)[1],  # 20/s, a burst of 20
        "other": store.create("keyed", "other", 20.0)[1],
    }
    server = ServerProcess(data, config=config, workers=2).start()
    try:
        yield server, keys
    finally:
        assert server.stop() == 0
        assert "Traceback" not in server.log()


def events_of(server: ServerProcess, stream: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{server.url}/v1/streams/{stream}/events",
        params={"limit": 1000}, headers={"authorization": "Bearer r3ad"}, timeout=10,
    )  # fmt: skip
    answer.raise_for_status()
    return list(answer.json()["events"])


def test_replayed_webhook_ids_are_stored_once(
    served: tuple[ServerProcess, dict[str, str]], scale: Any, record: Callable[..., Any]
) -> None:
    server, _ = served
    deliveries, repeats = scale.pick(40, 400), 3
    acked = 0
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _copy in range(repeats):  # the sender retries every delivery, later, over and over
            for n in range(deliveries):
                body = json.dumps({"n": n}).encode()
                ts = str(int(time.time()))
                headers = _standard(HOOKS_SECRET, body, f"msg_{n}", ts)
                answer = client.post("/v1/streams/hooks/events", content=body, headers=headers)
                assert answer.status_code == 202, answer.text
                acked += 1
    deadline = time.monotonic() + 60
    stored: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        stored = events_of(server, "hooks")
        if len(stored) >= deliveries:
            break
        time.sleep(0.5)
    time.sleep(2)  # anything late would show as a duplicate now
    stored = events_of(server, "hooks")
    ns = [e["data"]["n"] for e in stored]
    record(load=f"{deliveries} webhook deliveries sent {repeats} times (2 workers)",
           faults="replayed webhook-id", acknowledged=acked, stored=len(stored),
           lost=deliveries - len(set(ns)), duplicates=len(ns) - len(set(ns)))  # fmt: skip
    assert sorted(ns) == list(range(deliveries))
    assert sorted(e["id"] for e in stored) == sorted(f"msg_{n}" for n in range(deliveries))


def _worker_counts(data: Path, status: str) -> dict[str, float]:
    counts = {}
    for worker in ("w0", "w1"):
        snapshot = json.loads((data / "run" / f"metrics-{worker}.json").read_text())
        counts[worker] = sum(
            value for name, labels, value in snapshot
            if name == "headrace_requests_total" and ["status", status] in labels
            and ["source", "keyed"] in labels
        )  # fmt: skip
    return counts


def test_a_keys_rate_holds_across_workers_and_spares_another_key(
    served: tuple[ServerProcess, dict[str, str]], scale: Any, record: Callable[..., Any]
) -> None:
    server, keys = served
    rate = burst = 20
    # one kept-alive connection stays on one worker: it must get the key's whole burst, not
    # that worker's share of it
    with httpx.Client(base_url=server.url, timeout=10) as client:
        started = time.monotonic()
        pinned = [client.post("/v1/streams/keyed/events", json={"p": i},
                              headers={"x-api-key": keys["limited"]}).status_code
                  for i in range(2 * burst)]  # fmt: skip
        pinned_elapsed = time.monotonic() - started
    assert pinned.count(202) >= burst, pinned
    assert pinned.count(202) <= burst + rate * pinned_elapsed + 1
    assert set(pinned) <= {202, 429}
    time.sleep(burst / rate + 0.2)  # the bucket full again
    # then a new connection per request, from several threads: the kernel spreads them over
    # both workers, and their answers together keep to the rate
    seconds = scale.pick(2.0, 10.0)
    answers: list[int] = []
    other: list[int] = []
    lock = threading.Lock()

    def send(key: str, into: list[int], until: float) -> None:
        while time.monotonic() < until:
            with httpx.Client(base_url=server.url, timeout=10) as fresh:
                code = fresh.post("/v1/streams/keyed/events", json={"k": key},
                                  headers={"x-api-key": keys[key]}).status_code  # fmt: skip
            with lock:
                into.append(code)
            if key == "other":
                time.sleep(0.1)  # well under its rate: none of its requests may be refused

    started = time.monotonic()
    until = started + seconds
    threads = [threading.Thread(target=send, args=("limited", answers, until)) for _ in range(4)]
    threads.append(threading.Thread(target=send, args=("other", other, until)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    time.sleep(1.5)  # each worker publishes its counters every second
    refused_by = _worker_counts(server.data_dir, "429")
    allowed = burst + rate * elapsed
    record(load=f"{len(answers)} requests of one key in {elapsed:.1f}s on fresh connections, "
                f"{len(other)} of another", faults=f"key over its rate ({rate}/s, burst {burst})",
           acknowledged=answers.count(202), allowed=round(allowed),
           refused_per_worker=refused_by, other_key_refused=len(other) - other.count(202))  # fmt: skip
    assert set(answers) <= {202, 429}
    assert answers.count(202) <= allowed
    assert answers.count(429) > 0
    assert all(count > 0 for count in refused_by.values()), refused_by  # both workers refused
    assert other and set(other) == {202}


# -- DNS rebinding ----------------------------------------------------------------------------

READ_PATHS = [
    "/", "/dashboard/static/app.js", "/api/dashboard/overview", "/api/dashboard/streams",
    "/api/dashboard/pagehits", "/api/dashboard/deadletters", "/api/dashboard/badrows",
    "/v1/deadletters", "/v1/badrows", "/v1/loads", "/v1/streams/open/events",
    "/metrics", "/readyz", "/healthz", "/openapi.json",
]  # fmt: skip
"""Every GET a worker answers with stored data, its state or its metrics (from the route tables
of ``server.app``, ``ingest.app``, ``dashboard.routes`` and ``loads.api``); the public tracker
(``/sdk/headrace.js``, ``/favicon.ico``, ``/demo``) is left out."""


def test_rebinding_hosts_are_refused_on_every_read_and_metrics_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: Callable[..., Any]
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps({
        "sources": {"open": {"type": "http"}},
        "sinks": {"lake": {"type": "lake", "inputs": ["open"]}},
    }))  # fmt: skip
    ingest = ServerProcess(tmp_path / "data", config=config, workers=2, command="ingest").start()
    deliver = ServerProcess(tmp_path / "data", config=config, command="deliver").start()
    hosts = ["attacker.example", "attacker.example:8080", "127.0.0.1.nip.io", "localhost.evil",
             "0x7f000001.example", "ATTACKER.EXAMPLE:80"]  # fmt: skip
    refused, answered = 0, []
    try:
        for server, paths in ((ingest, READ_PATHS), (deliver, ["/metrics", "/readyz", "/healthz"])):
            for path in paths:
                for host in hosts:
                    answer = httpx.get(server.url + path, headers={"host": host}, timeout=10)
                    if (answer.status_code, answer.json().get("error")) == (
                        403,
                        "misdirected_host",
                    ):
                        refused += 1
                    else:
                        answered.append(
                            f"{server.command} {path} Host: {host} -> {answer.status_code}"
                        )
                loopback = httpx.get(server.url + path, headers={"host": "localhost"}, timeout=10)
                assert loopback.status_code != 403, (path, loopback.text)
    finally:
        deliver.stop()
        ingest.stop()
    record(load=f"{len(READ_PATHS) + 3} endpoints x {len(hosts)} rebinding Hosts (serve, deliver)",
           faults="DNS rebinding Host", acknowledged=len(answered), refused=refused)  # fmt: skip
    assert answered == []
