"""The page-hits view's numbers: hits (and unique visitors) over time beside the previous period
of the same length, top pages, referrer domains, and browsers, systems and devices.

Unique visitors count distinct values of the ``visitor`` field, which the page-hits source fills
at ingest with a daily salted hash (``$visitor``, see ``ingest.visitor``). The salt changes each
UTC day, so one person on two days counts as two visitors over a longer range: the honest count
a daily salt allows, the same trade that privacy-first analytics make. A stream without the
field shows hits only.

A hit is an event without an ``event`` field or with ``event: page_view``: the browser tracker
sends clicks and ``track()`` calls to the same stream, and those are no page hits.

A referrer counts by the domain of its URL (lower case, without "www."); a hit without one
(typed in, a bookmark, a stripped referrer) counts as "Direct / None". The filter
``referrer_domain=example.org`` (or ``(direct)``) narrows every number to one referrer domain,
as ``pagePath=/pricing`` does to one page.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from headrace.dashboard.readers import StreamReader
from headrace.dashboard.useragent import breakdown
from headrace.query.lake import LakeQuery

VISITOR_FIELD = "visitor"
DIRECT = "Direct / None"
DIRECT_FILTER = "(direct)"  # no domain has parentheses
PAGE_VIEWS = ("event", "page_view")  # the tracker's page views; other tracked events are not hits
AGENTS_READ = 5000  # distinct User-Agents parsed; the rarer rest count as "Other"


def domain_filter(value: str) -> tuple[str, str | None]:
    """The ``hosts`` entry of a ``referrer_domain`` parameter."""
    domain = value.strip().lower().removeprefix("www.")
    return ("referrer", None if domain in ("", DIRECT_FILTER) else domain)


def page_hits(reader: StreamReader, q: LakeQuery, top: int) -> dict[str, Any]:
    """The page-hits document for the selection ``q`` (see the module docstring)."""
    q = dataclasses.replace(q, missing_or=[*q.missing_or, PAGE_VIEWS])
    assert q.since_us is not None and q.until_us is not None
    has_visitors = VISITOR_FIELD in reader.columns()
    current = reader.counts(q, None)
    hits = current["series"].get("events") or [0] * len(current["times"])
    span = q.until_us - q.since_us
    before = dataclasses.replace(q, since_us=q.since_us - span, until_us=q.since_us)
    previous = reader.counts(before, None)
    previous_hits = _aligned(previous["series"].get("events") or [], len(hits))
    distinct = VISITOR_FIELD if has_visitors else None
    doc: dict[str, Any] = {
        "bucket_seconds": current["bucket_seconds"],
        "times": current["times"],
        "total": current["total"],
        "visitors": reader.distinct_count(q, VISITOR_FIELD) if has_visitors else None,
        "series": {"hits": hits},
        "previous": {
            "since_us": before.since_us,
            "until_us": before.until_us,
            "total": previous["total"],
            "visitors": reader.distinct_count(before, VISITOR_FIELD) if has_visitors else None,
            "series": {"hits": previous_hits},
        },
        "top_pages": reader.top(q, "pagePath", top, distinct=distinct),
        "top_referrers": _referrers(reader.top(q, "referrer", top, host=True, distinct=distinct)),
    }
    if has_visitors:
        doc["series"]["visitors"] = reader.distinct_over_time(q, VISITOR_FIELD)
        doc["previous"]["series"]["visitors"] = _aligned(
            reader.distinct_over_time(before, VISITOR_FIELD), len(hits)
        )
    agents = reader.top(q, "userAgent", AGENTS_READ)
    doc.update(breakdown([(_agent(a["value"]), a["count"]) for a in agents], current["total"]))
    return doc


def _aligned(counts: list[int], length: int) -> list[int]:
    """The previous period's buckets matched one to one with the current period's."""
    return (counts + [0] * length)[:length]


def _referrers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top referrer hosts as shown: a missing one is "Direct / None", with its filter value."""
    out = []
    for row in rows:
        host = row["value"]
        shown = {**row, "value": DIRECT if host is None else host}
        shown["filter"] = DIRECT_FILTER if host is None else host
        out.append(shown)
    return out


def _agent(value: Any) -> str | None:
    from headrace.dashboard.lake_stats import MISSING

    return None if value is None or value == MISSING else str(value)
