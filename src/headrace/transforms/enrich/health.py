"""What ``enrich_http`` remembers about its service: answers (an LRU cache with a TTL), the keys
that failed lately, and the circuit breaker that opens on evidence of an outage (see
``headrace.transforms.enrich`` for the rules).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from headrace.transforms.enrich.config import CircuitBreaker

log = logging.getLogger("headrace.transforms.enrich")


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


class CircuitOpen(Exception):
    """The circuit refused a lookup; the message says why and when it closes."""


_OUTAGE = "connection errors, timeouts, 429 or 5xx"
_WINDOW_KEYS = 4096
"""Most distinct keys the breaker's window holds (the oldest go first): enough for the ratio."""
_KEYS_REMEMBERED = 10_000
"""Most keys whose failures are remembered (least recently failed go first)."""


def _utc(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


class _Window:
    """The latest outcome of each distinct key requested within the last ``seconds``."""

    def __init__(self, seconds: float, size: int = _WINDOW_KEYS) -> None:
        self.seconds = seconds
        self.size = size
        self._latest: OrderedDict[str, tuple[float, bool]] = OrderedDict()  # oldest first
        self.failed = 0

    def add(self, key: str, failed: bool, now: float) -> None:
        old = self._latest.pop(key, None)
        if old is not None:
            self.failed -= old[1]
        self._latest[key] = (now, failed)
        self.failed += failed
        horizon = now - self.seconds
        while self._latest:
            at, _failed = next(iter(self._latest.values()))
            if at > horizon and len(self._latest) <= self.size:
                break
            self.failed -= self._latest.popitem(last=False)[1][1]

    def clear(self) -> None:
        self._latest.clear()
        self.failed = 0

    def __len__(self) -> int:
        return len(self._latest)


class Breaker:
    """Open when ``failures`` distinct keys, at least ``failure_ratio`` of those requested in the
    last ``window`` seconds, got no answer; half-open (one trial) after ``reset_after``."""

    def __init__(self, config: CircuitBreaker) -> None:
        self.config = config
        self.opens = 0
        """Times the circuit went from closed to open."""
        self._lock = threading.Lock()
        self._window = _Window(config.window)
        self._opened_at: float | None = None  # monotonic; None: closed
        self._closes_at = 0.0  # wall clock, for the messages
        self._reason = ""
        self._trial = False

    def admit(self) -> bool:
        """Let a lookup go ahead: ``True`` if it is the half-open circuit's one trial (it must end
        in ``answered``, ``failed`` or ``release``); ``CircuitOpen`` if it may not."""
        with self._lock:
            if self._opened_at is None:
                return False
            if self._trial or not self._due():
                raise CircuitOpen(self._refusal())
            self._trial = True
            return True

    def trial_due(self) -> bool:
        """Whether the next lookup would be the half-open circuit's trial."""
        with self._lock:
            return self._opened_at is not None and not self._trial and self._due()

    def refusal(self) -> str | None:
        """Why lookups are refused now, or ``None`` while the circuit is closed."""
        with self._lock:
            return None if self._opened_at is None else self._refusal()

    def answered(self, key: str, trial: bool) -> bool:
        """The service answered a lookup of ``key`` (a 4xx too): it is up. ``True`` if that
        closed the circuit."""
        with self._lock:
            if self._opened_at is None:
                self._window.add(key, False, time.monotonic())
                return False
            if not trial:  # begun before the circuit opened: the trial decides
                return False
            self._trial = False
            self._opened_at = None
            self._window.clear()  # the outage's failures are over
            log.info("enrichment circuit closed: a trial lookup got an answer")
            return True

    def failed(self, key: str, why: str, *, trial: bool, suspect: bool) -> None:
        """A lookup of ``key`` got no answer after its retries; ``suspect``: the key had failed
        before, so its failing again may be about the key, not the service."""
        with self._lock:
            now = time.monotonic()
            if trial:
                self._trial = False
                if not suspect:
                    self._open(now, f"the trial lookup got no answer either ({why})")
                return
            if self._opened_at is not None:
                return
            window = self._window
            window.add(key, True, now)
            failed, seen = window.failed, len(window)
            if failed >= self.config.failures and failed >= self.config.failure_ratio * seen:
                self._open(now, f"{failed} of {seen} distinct keys requested in the last "
                                f"{self.config.window:g} s failed with {_OUTAGE} (latest: {why})")  # fmt: skip

    def release(self) -> None:
        """Give back a half-open trial that ended without saying anything about the service."""
        with self._lock:
            self._trial = False

    @property
    def open(self) -> bool:
        """Open or half-open: lookups are refused or tried one at a time."""
        return self._opened_at is not None

    def _due(self) -> bool:
        assert self._opened_at is not None
        return time.monotonic() - self._opened_at >= self.config.reset_after

    def _open(self, now: float, reason: str) -> None:
        if self._opened_at is None:
            self.opens += 1
            log.warning("enrichment circuit opened: %s", reason)
        self._opened_at = now
        self._closes_at = time.time() + self.config.reset_after
        self._reason = reason

    def _refusal(self) -> str:
        if self._trial:
            then = "a trial lookup is under way; it closes if that gets an answer"
        else:
            then = f"closes at {_utc(self._closes_at)} if a trial lookup then gets an answer"
        return f"circuit open: {self._reason}; {then}"


@dataclass
class _KeyFailure:
    error: str
    failed_at: float  # wall clock
    until: float  # monotonic: recalled until then
    outage: bool  # no answer (not a 4xx): forgotten when the circuit closes
    count: int  # failed lookups of this key in a row


class KeyFailures:
    """What each key's last failed lookup was, recalled for ``ttl``, and how often it failed in a
    row (kept until it succeeds): never an answer, only a brief memory of the failure."""

    def __init__(self, ttl: float, size: int = _KEYS_REMEMBERED) -> None:
        self.ttl = ttl
        self.size = size
        self._lock = threading.Lock()  # written from the request threads
        self._items: OrderedDict[str, _KeyFailure] = OrderedDict()

    def remember(self, key: str, error: str, *, outage: bool) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            count = 1 if old is None else old.count + 1
            until = time.monotonic() + self.ttl
            self._items[key] = _KeyFailure(error, time.time(), until, outage, count)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def recall(self, key: str) -> str | None:
        """The key's failure (with when) if it is remembered still, else ``None``."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item.until <= time.monotonic():
                return None
            until = time.time() + (item.until - time.monotonic())
            return (f"{item.error} (at {_utc(item.failed_at)}; remembered until "
                    f"{_utc(until)}, not requested again until then)")  # fmt: skip

    def count(self, key: str) -> int:
        """Failed lookups of ``key`` in a row."""
        with self._lock:
            item = self._items.get(key)
            return 0 if item is None else item.count

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def forgive_outage(self) -> None:
        """Stop recalling failures that got no answer (the service is back); 4xx answers stand."""
        with self._lock:
            for item in self._items.values():
                if item.outage:
                    item.until = 0.0


__all__ = ["Breaker", "CircuitOpen", "KeyFailures", "TtlLru"]
