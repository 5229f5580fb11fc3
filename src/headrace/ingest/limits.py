"""Per-source rate limits and CORS: the answers a source gives before it looks at a body."""

from __future__ import annotations

import time

from headrace.config.sources import Cors, RateLimit
from headrace.errors import RequestRejected
from headrace.ingest.ratebudget import rate_limited


class TokenBucket:
    """``rate`` tokens a second up to ``capacity``; a request takes one or is refused. This
    worker's own: the ingest path uses the shared ``ratebudget.SharedBucket`` and falls back
    to this, at the worker's share (``for_worker``), only when the shared table is full."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    @classmethod
    def for_worker(cls, limit: RateLimit, workers: int) -> TokenBucket:
        """This worker's share of a source's limit (each of ``workers`` enforces 1/N)."""
        burst = limit.burst if limit.burst is not None else max(1.0, limit.rate)
        return cls(limit.rate / workers, max(1.0, burst / workers))

    def take(self, now: float | None = None) -> None:
        """Take a token, or raise 429 saying when to come back."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return
        raise rate_limited(self.tokens, self.rate)


class CorsPolicy:
    """Which origins may call a source from a browser, and the headers that say so."""

    def __init__(self, config: Cors) -> None:
        self.any_origin = "*" in config.allow_origins
        self.origins = {o.rstrip("/") for o in config.allow_origins}
        self.methods = ", ".join(m.upper() for m in config.allow_methods)
        self.allowed_methods = {m.upper() for m in config.allow_methods}
        self.headers = ", ".join(config.allow_headers)
        self.allowed_headers = {h.lower() for h in config.allow_headers}
        self.credentials = config.allow_credentials
        self.max_age = str(int(config.max_age))

    def allows(self, origin: str | None) -> bool:
        """Whether ``origin`` may read this source's answers."""
        return origin is not None and (self.any_origin or origin.rstrip("/") in self.origins)

    def response_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """Headers added to an answer to a request from ``origin``."""
        if not self.allows(origin):
            return []
        assert origin is not None
        echoed = "*" if self.any_origin and not self.credentials else origin
        headers = [
            (b"access-control-allow-origin", echoed.encode("latin-1")),
            (b"vary", b"Origin"),
            # a page on another origin sees only "simple" headers unless told: the tracker and
            # other browser senders need Retry-After to back off as a 429 or 503 asks
            (b"access-control-expose-headers", b"Retry-After"),
        ]
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def preflight(
        self, origin: str | None, method: str | None, request_headers: str | None
    ) -> list[tuple[bytes, bytes]]:
        """The headers of a preflight answer, or 403 ``cors_forbidden`` saying what is not allowed."""
        if not self.allows(origin):
            raise RequestRejected(403, "cors_forbidden", f"origin {origin!r} is not allowed")
        if (method or "").upper() not in self.allowed_methods:
            raise RequestRejected(403, "cors_forbidden", f"method {method!r} is not allowed")
        asked = {h.strip().lower() for h in (request_headers or "").split(",") if h.strip()}
        refused = sorted(asked - self.allowed_headers - {"content-type"})
        if refused:
            raise RequestRejected(403, "cors_forbidden", f"headers {refused} are not allowed")
        return [
            *self.response_headers(origin),
            (b"access-control-allow-methods", self.methods.encode("latin-1")),
            (b"access-control-allow-headers", self.headers.encode("latin-1")),
            (b"access-control-max-age", self.max_age.encode()),
        ]
