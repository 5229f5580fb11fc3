"""Bounded reads of a source: a default range, a widest range, and clear refusals."""

from __future__ import annotations

import pytest

from headrace.config.sources import SourceRead
from headrace.query.lake import QueryError
from headrace.query.source_read import bounded_params

NOW = 1_800_000_000_000_000  # µs
HOUR = 3_600_000_000


def test_default_range_ends_now() -> None:
    params = bounded_params([("pagePath", "/a")], SourceRead(default_range="2h"), now_us=NOW)
    assert params[0] == ("since", "2027-01-15T06:00:00Z")
    assert params[1] == ("until", "2027-01-15T08:00:00Z")
    assert params[2:] == [("pagePath", "/a")]


def test_since_alone_reaches_to_now_and_until_alone_looks_back() -> None:
    read = SourceRead(default_range="1h", max_range="1d")
    since = bounded_params([("since", str(NOW - 5 * HOUR))], read, now_us=NOW)
    assert since[:2] == [("since", "2027-01-15T03:00:00Z"), ("until", "2027-01-15T08:00:00Z")]
    until = bounded_params([("until", "2027-01-01T00:00:00Z")], read, now_us=NOW)
    assert until[0] == ("since", "2026-12-31T23:00:00Z")


def test_refusals() -> None:
    read = SourceRead(max_range="1d")
    with pytest.raises(QueryError, match="1 days") as wide:
        bounded_params([("since", "2020-01-01")], read, now_us=NOW)
    assert wide.value.reason == "range_too_wide"
    with pytest.raises(QueryError) as backwards:
        bounded_params([("since", "2027-02-01"), ("until", "2027-01-01")], read, now_us=NOW)
    assert backwards.value.reason == "invalid_range"
    with pytest.raises(QueryError) as bad:
        bounded_params([("since", "last tuesday")], read, now_us=NOW)
    assert bad.value.reason == "invalid_time"
