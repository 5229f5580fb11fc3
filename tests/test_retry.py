"""The one retry policy: waits grow to a cap, jitter stays in its window, limits end the tries."""

from __future__ import annotations

import time

import pytest

from headrace.retry import RetryPolicy


def test_waits_double_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(initial=0.5, maximum=3.0, jitter="none")
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert policy.delay(10_000) == 3.0  # no overflow however many tries


@pytest.mark.parametrize(("jitter", "floor"), [("full", 0.0), ("half", 0.5)])
def test_jitter_stays_within_its_window(jitter: str, floor: float) -> None:
    policy = RetryPolicy(initial=1.0, maximum=10.0, jitter=jitter)  # type: ignore[arg-type]
    waits = [policy.delay(3) for _ in range(2000)]  # ceiling 4 s
    assert all(4.0 * floor <= w <= 4.0 for w in waits)
    assert max(waits) - min(waits) > 1.0  # spread, not one value


def test_attempts_and_deadline_end_the_tries() -> None:
    policy = RetryPolicy(initial=0.01, maximum=0.01, attempts=3, jitter="none")
    started = time.monotonic()
    assert policy.next_delay(1, started) == 0.01
    assert policy.next_delay(2, started) == 0.01
    assert policy.next_delay(3, started) is None and policy.exhausted(3)
    unlimited = RetryPolicy(initial=5.0, maximum=5.0, deadline=1.0, jitter="none")
    assert unlimited.next_delay(1, time.monotonic()) is None  # 5 s would end past the deadline
    assert not unlimited.exhausted(1_000)
