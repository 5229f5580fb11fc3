"""The ``enrich_http`` transform: look each event up in another HTTP service and merge the answer.

Per batch: every event's URL is built (values percent-encoded into the path), identical URLs are
fetched once, cached answers (LRU, TTL) are used as they are, the rest are fetched with at most
``concurrency`` requests in flight, each answer read within ``timeout`` in all and
``max_response_bytes``. A request is retried on a timeout, a connection error, 429 and 5xx, with
doubling backoff. A failed lookup affects only its events (``on_failure``) and is never cached
as an answer; its key is remembered as failing for ``failure_ttl`` (its events meanwhile fail
without a request).

The circuit breaker opens only on evidence of an outage: within ``window``, at least
``failures`` distinct keys got no answer (after their retries) and they are at least
``failure_ratio`` of the distinct keys requested. A 4xx is an answer about one key, and a key
failing however often is one key. While open, lookups fail at once naming the key, the evidence
and when the circuit closes. After ``reset_after`` a batch's trial lookup goes first, alone, on a
key with no failures of its own where it can: any answer closes the circuit before the rest of
the batch is looked up; no answer reopens it; a key that failed before failing again says nothing.
"""

from __future__ import annotations

import json
import logging
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from headrace.keys import lookup
from headrace.retry import RetryPolicy
from headrace.transforms import TransformContext, TransformResult
from headrace.transforms.enrich.config import EnrichConfig
from headrace.transforms.enrich.health import Breaker, CircuitOpen, KeyFailures, TtlLru
from headrace.types import Event, FailedRecord

log = logging.getLogger("headrace.transforms.enrich")
_FORMATTER = string.Formatter()
_MISS: Any = object()
"""The default asked of ``TtlLru.get``: ``None`` is an answer (JSON null), not a miss."""
_TRIALS = 3
"""Most trial lookups one batch makes while the circuit is half-open."""


class LookupFailed(Exception):
    """A lookup that produced no answer; the message says why."""


class _TooLarge(Exception):
    """The service's answer is over ``max_response_bytes``."""


class _ServiceFailed(Exception):
    """Every attempt of a lookup timed out, could not connect or got a 429 or 5xx."""


class _Answered(Exception):
    """The service answered, but not with what the lookup needs (a 4xx, not JSON, too large)."""


@dataclass
class EnrichStats:
    """Counters for the benchmark and the logs."""

    lookups: int = 0
    cache_hits: int = 0
    requests: int = 0
    failures: int = 0
    remembered_failures: int = 0
    fast_fails: int = 0


Target = tuple[str, str]
"""A lookup: its URL and the key it names (``mysfitId=m1``), for errors."""


class EnrichHttp:
    """See the module docstring."""

    def __init__(self, transform_id: str, config: EnrichConfig) -> None:
        self.id = transform_id
        self.config = config
        self.parts = list(_FORMATTER.parse(config.url))
        self.cache = TtlLru(config.cache_size, config.cache_ttl)
        self.failed_keys = KeyFailures(config.failure_ttl)
        self.breaker = Breaker(config.circuit_breaker)
        # a lookup's retries: half jitter, so a retry never comes at once after a failure
        self.retry = RetryPolicy(initial=config.backoff, maximum=60.0, jitter="half")
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
                "enrich_requests": stats.requests, "enrich_failures": stats.failures,
                "enrich_remembered_failures": stats.remembered_failures,
                "enrich_fast_fails": stats.fast_fails,
                "enrich_circuit_opens": self.breaker.opens}  # fmt: skip

    def target_for(self, data: dict[str, Any]) -> Target:
        """The event's URL and key (``LookupFailed`` if a field is missing)."""
        out, key = [], []
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
            key.append(f"{name}={text if len(text) <= 64 else text[:64] + '…'}")
        url = "".join(out)
        # A value an event controls must not be able to break the client (httpx refuses URLs
        # over 64 KiB with an exception that is not an HTTPError) or flood the service's logs.
        if len(url) > self.config.max_url_length:
            raise LookupFailed(
                f"the URL would be {len(url)} characters (max_url_length is "
                f"{self.config.max_url_length})"
            )
        return url, ", ".join(key) or "the URL"

    def fetch(self, url: str, key: str) -> Any:
        """The service's JSON answer for ``url``, retrying; ``LookupFailed`` naming ``key`` if
        there is none.

        The breaker hears once per lookup, after its retries: a failure if no attempt got an
        answer, an answer if the service answered (a 4xx is about this key, not the service),
        nothing if the lookup failed for its own reasons (an invalid URL)."""
        try:
            trial = self.breaker.admit()
        except CircuitOpen as exc:
            with self._stats_lock:
                self.stats.fast_fails += 1
            raise LookupFailed(f"lookup of {key} not made: {exc}") from exc
        suspect = self.failed_keys.count(url) > 0
        try:
            answer = self._attempts(url, trial)
        except _ServiceFailed as exc:
            self.failed_keys.remember(url, f"lookup of {key} failed: {exc}", outage=True)
            self.breaker.failed(url, f"{key}: {exc}", trial=trial, suspect=suspect)
            raise LookupFailed(f"lookup of {key} failed: {exc}") from exc
        except _Answered as exc:
            self.failed_keys.remember(url, f"lookup of {key} failed: {exc}", outage=False)
            self._answered(url, trial)
            raise LookupFailed(f"lookup of {key} failed: {exc}") from exc
        except LookupFailed as exc:
            if trial:
                self.breaker.release()
            raise LookupFailed(f"lookup of {key} failed: {exc}") from exc
        except BaseException:
            if trial:
                self.breaker.release()
            raise
        self.failed_keys.forget(url)
        self._answered(url, trial)
        return answer

    def _answered(self, url: str, trial: bool) -> None:
        if self.breaker.answered(url, trial):
            self.failed_keys.forgive_outage()  # keys that failed in the outage may answer now

    def _attempts(self, url: str, trial: bool) -> Any:
        import httpx

        config = self.config
        error = "no attempt made"
        for attempt in range(config.retries + 1):
            if attempt:
                refusal = None if trial else self.breaker.refusal()
                if refusal is not None:  # other lookups found the service down meanwhile
                    raise LookupFailed(f"{error}; not retried: {refusal}")
                time.sleep(self.retry.delay(attempt))
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
        urls, answers, to_fetch = self._plan(events)
        if to_fetch and self.breaker.trial_due():
            to_fetch = self._trial_first(to_fetch, answers)
        fetched = self._pool.map(self._fetch_one, to_fetch)
        for target, outcome in zip(to_fetch, fetched, strict=True):
            self._settle(target[0], outcome, answers)
        return self._outcomes(events, urls, answers)

    def _plan(
        self, events: list[Event]
    ) -> tuple[list[str | LookupFailed], dict[str, Any], list[Target]]:
        """Each event's URL (or why it has none), the answers known already (from the cache, a
        remembered failure or as ``None`` for those to fetch) and the lookups to make."""
        urls: list[str | LookupFailed] = []
        answers: dict[str, Any] = {}
        to_fetch: list[Target] = []
        for event in events:
            try:
                url, key = self.target_for(event.data)
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
            elif (remembered := self.failed_keys.recall(url)) is not None:
                answers[url] = LookupFailed(remembered)
                self.stats.remembered_failures += 1
            else:
                to_fetch.append((url, key))
                answers[url] = None
        return urls, answers, to_fetch

    def _trial_first(self, to_fetch: list[Target], answers: dict[str, Any]) -> list[Target]:
        """Make the half-open circuit's trial before the rest of the batch (which the open
        circuit would refuse meanwhile), on the keys with the fewest failures of their own
        first, so a key that always fails cannot keep the circuit open; the lookups left."""
        order = sorted(range(len(to_fetch)), key=lambda i: self.failed_keys.count(to_fetch[i][0]))
        tried: set[int] = set()
        for i in order[:_TRIALS]:
            if not self.breaker.trial_due():  # decided: closed, or open again
                break
            tried.add(i)
            self._settle(to_fetch[i][0], self._fetch_one(to_fetch[i]), answers)
        return [target for i, target in enumerate(to_fetch) if i not in tried]

    def _settle(self, url: str, outcome: tuple[Any, str | None], answers: dict[str, Any]) -> None:
        answer, error = outcome
        if error is None:
            answers[url] = answer
            self.cache.put(url, answer)
        else:
            answers[url] = LookupFailed(error)

    def _outcomes(
        self, events: list[Event], urls: list[str | LookupFailed], answers: dict[str, Any]
    ) -> TransformResult:
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

    def _fetch_one(self, target: Target) -> tuple[Any, str | None]:
        # Runs in the pool: an exception here would come out of ``apply`` and fail the whole
        # batch over and over, so every failure becomes this URL's error.
        try:
            return self.fetch(*target), None
        except LookupFailed as exc:
            return None, str(exc)
        except Exception as exc:  # fetch has given its trial back
            log.exception("enrichment lookup failed unexpectedly")
            return None, f"{type(exc).__name__}: {exc}"


def healthcheck(config: EnrichConfig) -> str | None:
    """Whether the service's host accepts a TCP connection (nothing is requested)."""
    import socket
    from urllib.parse import urlsplit

    fixed = config.url.split("{", 1)[0]  # the scheme and host come before any field
    parts = urlsplit(fixed)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=config.timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"


__all__ = ["EnrichHttp", "EnrichStats", "LookupFailed"]
