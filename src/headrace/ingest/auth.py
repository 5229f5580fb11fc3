"""Authorizers of http sources: who may send, checked before anything is decoded or stored.

A source lists authorizers; a request passes if any of them does. Every comparison of a secret
or a signature is constant-time (``hmac.compare_digest``), signatures are computed over the raw
body exactly as it arrived (before decompression), and secrets never appear in errors or logs.
Failures answer 401 (403 when only an address check failed) with a machine-readable reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from headrace.config.models import (
    ApiKeyAuth,
    BulkExportSource,
    HmacAuth,
    HttpSource,
    IpAllowAuth,
    PythonAuth,
    TokenAuth,
)
from headrace.errors import RequestRejected
from headrace.ingest.keys import ApiKey, KeyStore, hash_key


@dataclass(frozen=True)
class RequestFacts:
    """What an authorizer may look at."""

    headers: dict[str, str]  # names in lower case
    body: bytes  # as sent
    client: str | None  # the peer's address
    query: bytes = b""  # the raw query string


log = logging.getLogger("headrace.ingest.auth")


class TokenCheck:
    """A header equal to one of the configured tokens."""

    def __init__(self, config: TokenAuth) -> None:
        self.header = config.header.lower()
        self.tokens = [s.get_secret_value().encode() for s in config.secrets]
        self.header_names = frozenset({self.header.encode("latin-1")})

    def __call__(self, request: RequestFacts, now: float) -> str | None:
        value = request.headers.get(self.header)
        if value is None:
            return "missing_token"
        given = value.encode("latin-1")
        matched = False
        for token in self.tokens:  # every token compared: the time does not tell which matched
            matched |= hmac.compare_digest(given, token)
        return None if matched else "invalid_token"


_PRESETS = {  # header, prefix, delivery-id header
    "github": ("x-hub-signature-256", "sha256=", "x-github-delivery"),
    # ControlShift's docs: 'sha256:' + OpenSSL::HMAC.hexdigest('SHA256', secret, body), a colon
    # where GitHub has "="; only the documented form is accepted
    "controlshift": ("x-controlshift-webhook-signature", "sha256:", None),
    "generic": (None, "", None),
}


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``ValueError`` if it is not base64 of 16+ bytes."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a standard-webhooks secret is whsec_ followed by base64") from exc
    if len(key) < 16:
        raise ValueError("a standard-webhooks secret must hold at least 16 bytes")
    return key


class HmacCheck:
    """A signature over the raw body (and, for some schemes, an id and a timestamp)."""

    def __init__(self, config: HmacAuth) -> None:
        self.preset = config.preset
        self.tolerance = config.tolerance
        self.digest = getattr(hashlib, config.algorithm)
        self.encoding = config.encoding
        self.delivery_id_header: str | None
        if config.preset == "standard-webhooks":
            self.keys = [standard_webhooks_key(s.get_secret_value()) for s in config.secrets]
            self.header, self.prefix = "webhook-signature", ""
            self.timestamp_header: str | None = "webhook-timestamp"
            self.delivery_id_header = "webhook-id"
            self.digest, self.encoding = hashlib.sha256, "base64"
        else:
            header, prefix, self.delivery_id_header = _PRESETS[config.preset]
            self.keys = [s.get_secret_value().encode() for s in config.secrets]
            self.header = (config.header or header or "").lower()
            self.prefix = config.prefix if config.prefix is not None else prefix
            self.timestamp_header = (config.timestamp_header or "").lower() or None
            if config.preset != "generic":
                self.digest, self.encoding = hashlib.sha256, "hex"
        names = {self.header, self.timestamp_header, self.delivery_id_header}
        self.header_names = frozenset(n.encode("latin-1") for n in names if n)

    def _expected(self, key: bytes, content: bytes) -> bytes:
        mac = hmac.new(key, content, self.digest).digest()
        return base64.b64encode(mac) if self.encoding == "base64" else mac.hex().encode()

    def _timestamp(self, request: RequestFacts, now: float) -> tuple[str | None, str | None]:
        if self.timestamp_header is None:
            return None, None
        raw = request.headers.get(self.timestamp_header)
        if raw is None:
            return None, "missing_timestamp"
        stripped = raw.strip()
        # ASCII digits only ("¹" is a digit to isdigit()), and few: int() of thousands fails
        if not (stripped.isascii() and stripped.isdigit() and len(stripped) <= 12):
            return None, "invalid_timestamp"
        if abs(now - int(stripped)) > self.tolerance:
            return None, "timestamp_out_of_tolerance"
        return stripped, None

    def __call__(self, request: RequestFacts, now: float) -> str | None:
        header = request.headers.get(self.header)
        if header is None:
            return "missing_signature"
        timestamp, problem = self._timestamp(request, now)
        if problem:
            return problem
        if self.preset == "standard-webhooks":
            delivery = request.headers.get("webhook-id")
            if not delivery:
                return "missing_delivery_id"
            content = f"{delivery}.{timestamp}.".encode() + request.body
            # space-separated "v1,<base64>" entries; other versions are ignored
            given = [p[3:].encode() for p in header.split() if p.startswith("v1,")]
        else:
            content = request.body if timestamp is None else f"{timestamp}.".encode() + request.body
            value = header.strip()
            if not value.startswith(self.prefix):
                return "invalid_signature"
            text = value[len(self.prefix) :]
            given = [(text.lower() if self.encoding == "hex" else text).encode("latin-1")]
        matched = False
        for key in self.keys:
            expected = self._expected(key, content)
            for candidate in given:
                matched |= hmac.compare_digest(candidate, expected)
        return None if matched else "invalid_signature"


class ApiKeyCheck:
    """A live key issued for this source, in a header or a query parameter."""

    RELOAD_EVERY = 2.0

    def __init__(self, config: ApiKeyAuth, source_id: str, data_dir: Path) -> None:
        self.header = config.header.lower()
        self.query = config.query
        self.store = KeyStore(data_dir)
        self.source_id = source_id
        self.header_names = frozenset({self.header.encode("latin-1")})
        self._keys: dict[str, ApiKey] = {}
        self._loaded_at = -1e9

    def _presented(self, request: RequestFacts) -> str | None:
        value = request.headers.get(self.header)
        if value is None and self.query and request.query:
            for name, given in parse_qsl(request.query.decode("latin-1")):
                if name == self.query:
                    return given
        return value

    def match(self, request: RequestFacts) -> tuple[ApiKey | None, str | None]:
        """The key presented, or why there is none."""
        now = time.monotonic()
        if now - self._loaded_at >= self.RELOAD_EVERY:  # new and revoked keys within seconds
            self._keys, self._loaded_at = self.store.live_hashes(self.source_id), now
        presented = self._presented(request)
        if presented is None:
            return None, "missing_api_key"
        key = self._keys.get(hash_key(presented))  # a hash of 256 random bits: nothing to time
        return (key, None) if key is not None else (None, "invalid_api_key")


@dataclass(frozen=True)
class Principal:
    """Who sent a request, as an authorizer established it."""

    name: str | None
    context: dict[str, Any]
    api_key: ApiKey | None = None
    delivery_id_header: str | None = None  # set only when a signature check passed


class PythonCheck:
    """A user function decides; results are cached by an identity header for a while."""

    CACHE_SIZE = 10_000

    def __init__(self, config: PythonAuth) -> None:
        module_name, _, attribute = config.function.partition(":")
        self.function: Callable[[dict[str, Any]], Any] = getattr(
            importlib.import_module(module_name), attribute
        )
        self.cache_header = config.cache_header.lower() if config.cache_header else None
        self.ttl = config.cache_ttl
        self._cache: OrderedDict[
            tuple[str, str, str, str | None, bytes], tuple[float, Principal]
        ] = OrderedDict()
        self.header_names = frozenset(
            {self.cache_header.encode("latin-1")} if self.cache_header else ()
        )

    def decide(
        self, request: RequestFacts, method: str, path: str
    ) -> tuple[Principal | None, str | None]:
        """The principal (allowed), or why not."""
        identity = request.headers.get(self.cache_header) if self.cache_header else None
        # The function may decide on any input, so a cached answer stands only for the same
        # identity, method, path, client and query; denials are not cached (no lock-outs).
        cache_key = (
            None if identity is None
            else (identity, method, path, request.client, request.query)
        )  # fmt: skip
        now = time.monotonic()
        if cache_key is not None:
            hit = self._cache.get(cache_key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(cache_key)
                return hit[1], None
        query = dict(parse_qsl(request.query.decode("latin-1")))
        call = {"method": method, "path": path, "headers": dict(request.headers),
                "query": query, "client_ip": request.client}  # fmt: skip
        try:
            answer = self.function(call)
        except Exception:
            log.exception("the python authorizer raised; the request is refused")
            return None, "authorizer_error"
        principal = _principal_of(answer)
        if principal is None:
            return None, "denied"
        if cache_key is not None:
            self._cache[cache_key] = (now + self.ttl, principal)
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal, None


def _principal_of(answer: Any) -> Principal | None:
    if answer is True:
        return Principal(None, {})
    if isinstance(answer, dict) and answer.get("allow") is True:
        context = answer.get("context")
        name = answer.get("principal")
        return Principal(
            str(name) if name is not None else None, context if isinstance(context, dict) else {}
        )
    return None


class IpAllowCheck:
    """The peer's address inside one of the networks."""

    def __init__(self, config: IpAllowAuth) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in config.cidrs]
        self.header_names: frozenset[bytes] = frozenset()

    def __call__(self, request: RequestFacts, now: float) -> str | None:
        if request.client is None:
            return "forbidden_address"
        try:
            address = ipaddress.ip_address(request.client)
        except ValueError:
            return "forbidden_address"
        if any(address in network for network in self.networks):
            return None
        return "forbidden_address"


class SourceAuth:
    """The authorizers of one source; ``verify`` raises ``RequestRejected`` unless one passes."""

    def __init__(
        self,
        source: HttpSource | BulkExportSource,
        source_id: str = "",
        data_dir: Path | None = None,
    ) -> None:
        self.checks: list[
            tuple[str, TokenCheck | HmacCheck | ApiKeyCheck | PythonCheck | IpAllowCheck]
        ] = []
        for auth in source.auth:
            if isinstance(auth, TokenAuth):
                self.checks.append(("token", TokenCheck(auth)))
            elif isinstance(auth, HmacAuth):
                self.checks.append(("hmac", HmacCheck(auth)))
            elif isinstance(auth, ApiKeyAuth):
                assert data_dir is not None, "api keys live in the data directory"
                self.checks.append(("api_key", ApiKeyCheck(auth, source_id, data_dir)))
            elif isinstance(auth, PythonAuth):
                self.checks.append(("python", PythonCheck(auth)))
            else:
                self.checks.append(("ip_allow", IpAllowCheck(auth)))
        self.header_names = frozenset().union(*(c.header_names for _, c in self.checks))
        self.wants_all_headers = any(isinstance(c, PythonCheck) for _, c in self.checks)
        self.delivery_id_header = next(
            (c.delivery_id_header for _, c in self.checks
             if isinstance(c, HmacCheck) and c.delivery_id_header),
            None,
        )  # fmt: skip

    def verify(
        self, request: RequestFacts, now: float, method: str = "POST", path: str = "/"
    ) -> Principal | None:
        """Pass (returning who sent it, when an authorizer knows), or raise 401/403 listing why
        each authorizer refused."""
        failures = []
        for kind, check in self.checks:
            if isinstance(check, ApiKeyCheck):
                key, problem = check.match(request)
                if key is not None:
                    return Principal(key.name or None, {}, key)
            elif isinstance(check, PythonCheck):
                principal, problem = check.decide(request, method, path)
                if principal is not None:
                    return principal
            else:
                problem = check(request, now)
                if problem is None:
                    if isinstance(check, HmacCheck) and check.delivery_id_header:
                        return Principal(None, {}, None, check.delivery_id_header)
                    return None
            assert problem is not None
            failures.append((kind, problem))
        only_address = all(kind == "ip_allow" for kind, _ in failures)
        status = 403 if only_address else 401
        reason = failures[0][1] if len(failures) == 1 else "unauthorized"
        raise RequestRejected(
            status, reason, "the request is not authorized",
            failed=[f"{kind}: {problem}" for kind, problem in failures],
        )  # fmt: skip
