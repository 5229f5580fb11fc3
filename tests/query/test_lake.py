"""Time parameters of the read API (``query/lake.py``)."""

from __future__ import annotations

import pytest

from headrace.query.lake import QueryError, parse_time_param


@pytest.mark.parametrize("value", ["1e100", "-1e100", "99999999999999999999", "10000-01-01"])
def test_times_outside_the_calendar_are_a_clear_400_reason(value: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_time_param("until", value)
    assert info.value.reason == "invalid_time"


def test_ordinary_times_parse() -> None:
    assert parse_time_param("since", "1970-01-01T00:00:01Z") == 1_000_000
    assert parse_time_param("since", "1763800000000") == 1_763_800_000_000_000
