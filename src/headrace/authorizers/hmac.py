"""The ``hmac`` authorizer: a signature over the raw body (and, for some schemes, an id and a
timestamp), with presets for Standard Webhooks, GitHub and ControlShift."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal

from pydantic import Field, field_validator, model_validator

from headrace.authorizers import ANONYMOUS, AuthSetup, Principal, RequestFacts
from headrace.config.base import AuthorizerConfig, NonEmptySecret, Seconds
from headrace.registry import register
from headrace.standard_webhooks import secret_key


class HmacAuth(AuthorizerConfig):
    """An HMAC signature over the raw body as sent (before decompression). Presets:
    ``standard-webhooks`` (webhook-id/-timestamp/-signature, ``whsec_`` secrets, a 300 s window
    both ways), ``github`` (X-Hub-Signature-256: sha256=<hex>), ``controlshift``
    (X-ControlShift-Webhook-Signature: sha256:<hex>, a colon, as ControlShift documents it), or
    ``generic`` with the keys below.
    Fails with 401."""

    type: Literal["hmac"]
    preset: Literal["standard-webhooks", "github", "controlshift", "generic"] = "generic"
    """Which provider's scheme; ``generic`` takes header, algorithm, encoding and prefix."""
    secrets: list[NonEmptySecret] = Field(min_length=1)
    """Signing secrets; any may match, so two can be live while rotating."""
    header: str | None = None
    """Header holding the signature (required for ``generic``; overrides a preset's)."""
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    """Hash of the HMAC (``generic``)."""
    encoding: Literal["hex", "base64"] = "hex"
    """How the signature is written (``generic``)."""
    prefix: str | None = None
    """Text before the signature, e.g. ``sha256=`` (``generic``; overrides a preset's)."""
    timestamp_header: str | None = None
    """Header holding a Unix timestamp; the signed content is then ``<timestamp>.<body>`` and
    the timestamp must be within ``tolerance`` of now (``generic``)."""
    tolerance: Seconds = 300.0
    """Largest difference, past or future, between a signed timestamp and now."""

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _secrets_fit_the_preset(self) -> HmacAuth:
        if self.preset == "standard-webhooks":
            for secret in self.secrets:
                secret_key(secret.get_secret_value())  # ValueError says why
        elif self.preset == "generic" and not self.header:
            raise ValueError("the generic preset needs a header")
        return self


_PRESETS = {  # header, prefix, delivery-id header
    "github": ("x-hub-signature-256", "sha256=", "x-github-delivery"),
    # ControlShift's docs: 'sha256:' + OpenSSL::HMAC.hexdigest('SHA256', secret, body), a colon
    # where GitHub has "="; only the documented form is accepted
    "controlshift": ("x-controlshift-webhook-signature", "sha256:", None),
    "generic": (None, "", None),
}


class HmacCheck:
    """A signature over the raw body (and, for some schemes, an id and a timestamp)."""

    reads_all_headers = False

    def __init__(self, config: HmacAuth, setup: AuthSetup | None = None) -> None:
        self.preset = config.preset
        self.tolerance = config.tolerance
        self.digest = getattr(hashlib, config.algorithm)
        self.encoding = config.encoding
        self.delivery_id_header: str | None
        if config.preset == "standard-webhooks":
            self.keys = [secret_key(s.get_secret_value()) for s in config.secrets]
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
        self._passed = Principal(delivery_id_header=self.delivery_id_header)

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

    def _signed(
        self, request: RequestFacts, header: str, timestamp: str | None
    ) -> tuple[bytes, list[bytes]] | str:
        """The signed content and the signatures the request offers, or why there are none."""
        if self.preset == "standard-webhooks":
            delivery = request.headers.get("webhook-id")
            if not delivery:
                return "missing_delivery_id"
            content = f"{delivery}.{timestamp}.".encode() + request.body
            # space-separated "v1,<base64>" entries; other versions are ignored
            return content, [p[3:].encode() for p in header.split() if p.startswith("v1,")]
        content = request.body if timestamp is None else f"{timestamp}.".encode() + request.body
        value = header.strip()
        if not value.startswith(self.prefix):
            return "invalid_signature"
        text = value[len(self.prefix) :]
        return content, [(text.lower() if self.encoding == "hex" else text).encode("latin-1")]

    def check(self, request: RequestFacts, now: float) -> Principal | str:
        header = request.headers.get(self.header)
        if header is None:
            return "missing_signature"
        timestamp, problem = self._timestamp(request, now)
        if problem:
            return problem
        signed = self._signed(request, header, timestamp)
        if isinstance(signed, str):
            return signed
        content, given = signed
        matched = False
        for key in self.keys:
            expected = self._expected(key, content)
            for candidate in given:
                matched |= hmac.compare_digest(candidate, expected)
        if not matched:
            return "invalid_signature"
        return self._passed if self.delivery_id_header else ANONYMOUS


register(
    "authorizer", "hmac", config=HmacAuth,
    implementation="headrace.authorizers.hmac:HmacCheck",
)  # fmt: skip
