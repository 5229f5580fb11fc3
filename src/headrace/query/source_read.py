"""``GET`` on a readable source's path (``read:`` in its config): the events API, always bounded.

A read without ``since`` covers ``default_range`` back from ``until`` (or now); a range wider
than ``max_range`` is refused. With the catalog's per-file time bounds, a bounded range means
only the files of that range are opened, and ``limit`` plus the cursor bound the answer: no
request scans the whole stream.
"""

from __future__ import annotations

import time

from headrace.config.sources import SourceRead
from headrace.query.lake import QueryError, iso, parse_time_param


def bounded_params(
    params: list[tuple[str, str]], read: SourceRead, now_us: int | None = None
) -> list[tuple[str, str]]:
    """``params`` with ``since`` and ``until`` filled in and checked against ``read``."""
    values = dict(params)
    now = time.time_ns() // 1000 if now_us is None else now_us
    until = parse_time_param("until", values["until"]) if values.get("until") else now
    if values.get("since"):
        since = parse_time_param("since", values["since"])
    else:
        since = until - int(read.default_range * 1_000_000)
    if since >= until:
        raise QueryError("invalid_range", "since must be before until")
    if until - since > read.max_range * 1_000_000:
        raise QueryError(
            "range_too_wide",
            f"since..until spans more than {_duration(read.max_range)}; ask for a narrower range",
        )
    rest = [(k, v) for k, v in params if k not in ("since", "until")]
    return [("since", iso(since) or ""), ("until", iso(until) or ""), *rest]


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"
