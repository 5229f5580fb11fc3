"""The ``enrich_http`` transform: look each event up in another HTTP service and merge the answer.

Per batch: every event's URL is built (values percent-encoded into the path), identical URLs are
fetched once, cached answers (LRU, TTL) are used as they are, the rest are fetched with at most
``concurrency`` requests in flight, each answer read within ``timeout`` in all and
``max_response_bytes``. A request is retried on a timeout, a connection error, 429 and
5xx, with doubling backoff; a circuit breaker opened by consecutive failures makes lookups fail
at once until ``reset_after`` has passed, then lets one trial through. A failed lookup affects
only its events (``on_failure``); it is never cached.
"""

from __future__ import annotations

import json
import logging
import random
import string
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from headrace.config.transform_models import CircuitBreaker, EnrichHttpTransform
from headrace.sinks.keys import lookup
from headrace.transforms import TransformContext, TransformResult
from headrace.types import Event, FailedRecord

log = logging.getLogger("headrace.transforms.enrich")
_FORMATTER = string.Formatter()
_MISS: Any = object()
"""The default asked of ``TtlLru.get``: ``None`` is an answer (JSON null), not a miss."""


class LookupFailed(Exception):
    """A lookup that produced no answer; the message says why."""


class _TooLarge(Exception):
    """The service's answer is over ``max_response_bytes``."""


class _ServiceFailed(Exception):
    """Every attempt of a lookup timed out, could not connect or got a 429 or 5xx."""


class _Answered(Exception):
    """The service answered, but not with what the lookup needs (a 4xx, not JSON, too large)."""


class TtlLru:
    """A least-recently-used cache whose entries also expire."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or ``default`` if there is none (a cached ``None`` is a hit)."""
        item = self._items.get(key)
        if item is None:
            return default
        if item[0] <= time.monotonic():
            del self._items[key]
            return default
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0:
            return
        self._items[key] = (time.monotonic() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class Breaker:
    """Open after ``failures`` consecutive failed lookups; half-open (one trial) after
    ``reset_after``."""

    def __init__(self, config: CircuitBreaker) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    def allow(self) -> Literal["closed", "trial"] | None:
        """Whether a lookup may go ahead: ``"closed"``, ``"trial"`` (the one lookup let through
        a half-open circuit: it must end in ``record`` or ``release``) or ``None`` (refused)."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if time.monotonic() - self._opened_at < self.config.reset_after or self._trial:
                return None
            self._trial = True  # half-open: this caller is the one trial
            return "trial"

    def record(self, ok: bool) -> None:
        with self._lock:
            self._trial = False
            if ok:
                self._failures = 0
                self._opened_at = None
                return
            self._failures += 1
            if self._opened_at is not None or self._failures >= self.config.failures:
                if self._opened_at is None:
                    log.warning("enrichment circuit opened after %d failures", self._failures)
                self._opened_at = time.monotonic()

    def release(self) -> None:
        """Give back a half-open trial that ended without saying anything about the service."""
        with self._lock:
            self._trial = False

    @property
    def open(self) -> bool:
        return self._opened_at is not None


@dataclass
class EnrichStats:
    """Counters for the benchmark and the logs."""

    lookups: int = 0
    cache_hits: int = 0
    requests: int = 0
    failures: int = 0


class EnrichHttp:
    """See the module docstring."""

    def __init__(self, transform_id: str, config: EnrichHttpTransform) -> None:
        self.id = transform_id
        self.config = config
        self.parts = list(_FORMATTER.parse(config.url))
        self.cache = TtlLru(config.cache_size, config.cache_ttl)
        self.breaker = Breaker(config.circuit_breaker)
        self.stats = EnrichStats()
        self._stats_lock = threading.Lock()  # requests are counted from the request threads
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def open(self, context: TransformContext) -> None:
        """Start the HTTP client and the request threads."""
        import httpx

        limits = httpx.Limits(
            max_connections=self.config.concurrency,
            max_keepalive_connections=self.config.concurrency,
        )
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.config.timeout),
            limits=limits,
            headers=self.config.headers,
            follow_redirects=False,
        )
        self._pool = ThreadPoolExecutor(
            self.config.concurrency, thread_name_prefix=f"enrich-{self.id}"
        )

    def close(self) -> None:
        """Stop the threads and close connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def counters(self) -> dict[str, float]:
        """Running totals, published as ``headrace_<name>_total`` metrics."""
        stats = self.stats
        return {"enrich_lookups": stats.lookups, "enrich_cache_hits": stats.cache_hits,
                "enrich_requests": stats.requests, "enrich_failures": stats.failures}  # fmt: skip

    def url_for(self, data: dict[str, Any]) -> str:
        """The event's URL (``LookupFailed`` if a field is missing)."""
        out = []
        for literal, name, _spec, _conv in self.parts:
            out.append(literal)
            if name is None:
                continue
            value = lookup(data, name)
            if value is None or isinstance(value, dict | list):
                raise LookupFailed(f'field "{name}" is missing or not a scalar')
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if text in ("", ".", ".."):
                # quote() leaves these as they are and the client resolves dot segments, so
                # they would look up another path of the service (".." → the parent resource)
                raise LookupFailed(f'field "{name}" is {text!r}, which cannot name a resource')
            out.append(quote(text, safe=""))
        url = "".join(out)
        # A value an event controls must not be able to break the client (httpx refuses URLs
        # over 64 KiB with an exception that is not an HTTPError) or flood the service's logs.
        if len(url) > self.config.max_url_length:
            raise LookupFailed(
                f"the URL would be {len(url)} characters (max_url_length is "
                f"{self.config.max_url_length})"
            )
        return url

    def fetch(self, url: str) -> Any:
        """The service's JSON answer for ``url``, retrying; ``LookupFailed`` if there is none.

        The breaker hears once per lookup, after its retries: a failure if no attempt got an
        answer, a success if the service answered (a 4xx is about this lookup, not the
        service), nothing if the lookup failed for its own reasons (an invalid URL)."""
        admitted = self.breaker.allow()
        if admitted is None:
            raise LookupFailed("the circuit is open (the service kept failing)")
        outcome: bool | None = None
        try:
            answer = self._attempts(url, admitted == "trial")
            outcome = True
            return answer
        except _ServiceFailed as exc:
            outcome = False
            raise LookupFailed(str(exc)) from exc
        except _Answered as exc:
            outcome = True
            raise LookupFailed(str(exc)) from exc
        finally:
            if outcome is None:
                self.breaker.release()
            else:
                self.breaker.record(outcome)

    def _attempts(self, url: str, trial: bool) -> Any:
        import httpx

        config = self.config
        error = "no attempt made"
        for attempt in range(config.retries + 1):
            if attempt:
                if not trial and self.breaker.open:  # other lookups found the service down
                    raise LookupFailed(f"{error}; the circuit opened meanwhile")
                cap = config.backoff * 2 ** (attempt - 1)
                time.sleep(random.uniform(cap / 2, cap))  # noqa: S311 - jitter, not security
            with self._stats_lock:
                self.stats.requests += 1
            try:
                status, body = self._get(url)
            except httpx.TransportError as exc:  # timeouts, refused and reset connections
                error = f"{type(exc).__name__}: {exc}"
                continue
            except _TooLarge as exc:
                raise _Answered(str(exc)) from exc
            except Exception as exc:
                # Anything else (an invalid URL, a bad redirect, a decoding error) is about this
                # lookup, not the service: it fails this record only.
                raise LookupFailed(f"{type(exc).__name__}: {exc}") from exc
            if status == 429 or status >= 500:
                error = f"the service answered {status}"
                continue
            if status != 200:
                raise _Answered(f"the service answered {status}")
            try:
                return json.loads(body)
            except ValueError as exc:
                raise _Answered(f"the answer is not JSON: {exc}") from exc
        raise _ServiceFailed(f"{error} (after {config.retries + 1} attempts)")

    def _get(self, url: str) -> tuple[int, bytes]:
        """One request's status and (for a 200) body, read within ``timeout`` in all and
        ``max_response_bytes``: httpx's timeout bounds each read, so a server dripping a byte at
        a time could otherwise hold a lookup for ever, and a huge answer fill the memory."""
        import httpx

        deadline = time.monotonic() + self.config.timeout
        limit = self.config.max_response_bytes
        with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                return response.status_code, b""
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _TooLarge(f"the answer is {declared} bytes (max_response_bytes is {limit})")
            body = bytearray()
            for chunk in response.iter_bytes():  # decoded: a gzip bomb counts at full size
                body += chunk
                if len(body) > limit:
                    raise _TooLarge(f"the answer is over max_response_bytes ({limit})")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(
                        f"the answer took over {self.config.timeout:g}s to arrive"
                    )
            return 200, bytes(body)

    def _merge(self, data: dict[str, Any], answer: Any) -> dict[str, Any] | str:
        select = self.config.select
        if select and isinstance(answer, dict):
            answer = {k: answer[k] for k in select if k in answer}
        if self.config.target is not None:
            return {**data, self.config.target: answer}
        if not isinstance(answer, dict):
            return f"the answer is {type(answer).__name__}, not an object (set target)"
        return {**answer, **data}

    def apply(self, events: list[Event]) -> TransformResult:
        """Enrich each event; failures follow ``on_failure``."""
        assert self._pool is not None, "transform is not open"
        urls: list[str | LookupFailed] = []
        answers: dict[str, Any] = {}
        to_fetch: list[str] = []
        for event in events:
            try:
                url = self.url_for(event.data)
            except LookupFailed as exc:
                urls.append(exc)
                continue
            urls.append(url)
            self.stats.lookups += 1
            if url in answers:  # the URLs to fetch are in it too (as None): no list scan
                self.stats.cache_hits += 1  # the same lookup earlier in this batch
                continue
            cached = self.cache.get(url, _MISS)
            if cached is not _MISS:  # a cached JSON null is an answer like any other
                answers[url] = cached
                self.stats.cache_hits += 1
            else:
                to_fetch.append(url)
                answers[url] = None
        fetched = self._pool.map(self._fetch_one, to_fetch)
        for url, (answer, error) in zip(to_fetch, fetched, strict=True):
            if error is None:
                answers[url] = answer
                self.cache.put(url, answer)
            else:
                answers[url] = LookupFailed(error)
        result = TransformResult([])
        for event, target in zip(events, urls, strict=True):
            answer = target if isinstance(target, LookupFailed) else answers[target]
            merged = (
                str(answer) if isinstance(answer, LookupFailed) else self._merge(event.data, answer)
            )
            if not isinstance(merged, str):
                result.events.append(event.with_data(merged))
                continue
            self.stats.failures += 1
            if self.config.on_failure == "keep":
                result.events.append(event)
            elif self.config.on_failure == "drop":
                result.dropped += 1
            else:
                result.failed.append(FailedRecord(event, "enrich_failed", merged))
        return result

    def _fetch_one(self, url: str) -> tuple[Any, str | None]:
        # Runs in the pool: an exception here would come out of ``apply`` and fail the whole
        # batch over and over, so every failure becomes this URL's error.
        try:
            return self.fetch(url), None
        except LookupFailed as exc:
            return None, str(exc)
        except Exception as exc:  # fetch has given its trial back (finally)
            log.exception("enrichment lookup failed unexpectedly")
            return None, f"{type(exc).__name__}: {exc}"


__all__ = ["Breaker", "EnrichHttp", "EnrichStats", "LookupFailed", "TtlLru"]
