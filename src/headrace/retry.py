"""One retry policy for everything headrace retries: sink writes, sink opens, the client's sends,
enrichment lookups, DynamoDB's unprocessed items, S3 uploads, bulk loads and process restarts.

The wait before attempt ``n + 1`` is drawn from ``[floor, ceiling]`` with
``ceiling = min(maximum, initial * multiplier ** (n - 1))``: full jitter (``floor = 0``) spreads
retries of many clients over the whole window, ``jitter="half"`` keeps at least half of it,
``jitter="none"`` waits the ceiling. A policy stops after ``attempts`` tries (``None``: never) or
once the next wait would end past ``deadline`` seconds after the first try.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["full", "half", "none"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, a cap, a number of attempts and a deadline."""

    initial: float = 0.2
    """Ceiling of the first wait, in seconds."""
    maximum: float = 30.0
    """No wait is longer than this."""
    multiplier: float = 2.0
    """Each wait's ceiling is this times the one before."""
    attempts: int | None = None
    """Tries in all, the first included; ``None``: no limit."""
    deadline: float | None = None
    """Seconds from the first try after which no further try starts; ``None``: no limit."""
    jitter: Jitter = "full"

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try ``attempt`` (counted from 1) before the next."""
        exponent = min(max(attempt - 1, 0), 64)  # past 2**64 every ceiling is the maximum
        ceiling = min(self.maximum, self.initial * self.multiplier**exponent)
        if self.jitter == "none":
            return ceiling
        floor = ceiling / 2 if self.jitter == "half" else 0.0
        return random.uniform(floor, ceiling)  # noqa: S311 - spreading retries, not secrecy

    def exhausted(self, attempt: int) -> bool:
        """Whether try ``attempt`` was the last one allowed by ``attempts``."""
        return self.attempts is not None and attempt >= self.attempts

    def next_delay(self, attempt: int, started: float) -> float | None:
        """The wait before the try after ``attempt``, or ``None`` if the policy gives up now
        (``started``: ``time.monotonic()`` of the first try)."""
        if self.exhausted(attempt):
            return None
        wait = self.delay(attempt)
        if self.deadline is not None and time.monotonic() + wait > started + self.deadline:
            return None
        return wait


__all__ = ["Jitter", "RetryPolicy"]
