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

from headrace.dashboard.lake_stats import MISSING, pick_bucket
from headrace.dashboard.readers import StreamReader
from headrace.dashboard.useragent import breakdown
from headrace.query.lake import LakeQuery
from headrace.query.summary import Dimension, Summary

VISITOR_FIELD = "visitor"
DIRECT = "Direct / None"
DIRECT_FILTER = "(direct)"  # no domain has parentheses
PAGE_VIEWS = ("event", "page_view")  # the tracker's page views; other tracked events are not hits
AGENTS_READ = 5000  # distinct User-Agents parsed; the rarer rest count as "Other"
DIMENSIONS = [Dimension("pagePath"), Dimension("referrer", host=True), Dimension("userAgent")]


def domain_filter(value: str) -> tuple[str, str | None]:
    """The ``hosts`` entry of a ``referrer_domain`` parameter."""
    domain = value.strip().lower().removeprefix("www.")
    return ("referrer", None if domain in ("", DIRECT_FILTER) else domain)


def page_hits(reader: StreamReader, q: LakeQuery, top: int) -> dict[str, Any]:
    """The page-hits document for the selection ``q`` (see the module docstring): two scans,
    the period (every number) and the one before it (totals and buckets)."""
    q = dataclasses.replace(q, missing_or=[*q.missing_or, PAGE_VIEWS])
    assert q.since_us is not None and q.until_us is not None
    has_visitors = VISITOR_FIELD in reader.columns()
    distinct = VISITOR_FIELD if has_visitors else None
    now = reader.summary(q, DIMENSIONS, distinct, AGENTS_READ)
    span = q.until_us - q.since_us
    before_since = q.since_us - span
    before_q = dataclasses.replace(q, since_us=before_since, until_us=q.since_us)
    before = reader.summary(before_q, [], distinct, 1)
    bucket = pick_bucket(q.since_us, q.until_us)
    starts = _starts(q.since_us, q.until_us, bucket)
    earlier = _starts(before_since, q.since_us, bucket)[: len(starts)]
    pages, referrers, agents = now.groups
    doc: dict[str, Any] = {
        "bucket_seconds": bucket // 1_000_000,
        "times": [b // 1_000_000 for b in starts],
        "total": now.total,
        "visitors": now.distinct if has_visitors else None,
        "series": {"hits": _series(now, starts, 0)},
        "previous": {
            "since_us": before_since,
            "until_us": before_q.until_us,
            "total": before.total,
            "visitors": before.distinct if has_visitors else None,
            "series": {"hits": _aligned(_series(before, earlier, 0), len(starts))},
        },
        "top_pages": _shown(pages[:top], has_visitors),
        "top_referrers": _referrers(_shown(referrers[:top], has_visitors)),
    }
    if has_visitors:
        doc["series"]["visitors"] = _series(now, starts, 1)
        doc["previous"]["series"]["visitors"] = _aligned(_series(before, earlier, 1), len(starts))
    counted = [(_agent(a["value"]), a["count"]) for a in agents]
    doc.update(breakdown(counted, now.total))
    return doc


def _starts(since_us: int, until_us: int, bucket: int) -> list[int]:
    """The starts of the chart's buckets (as ``lake_stats.assemble_series`` makes them)."""
    return list(range((since_us // bucket) * bucket, until_us, bucket))


def _series(found: Summary, starts: list[int], which: int) -> list[int]:
    """Events (``which`` 0) or distinct visitors (1) per bucket."""
    return [found.buckets.get(start, (0, 0))[which] for start in starts]


def _shown(rows: list[dict[str, Any]], has_visitors: bool) -> list[dict[str, Any]]:
    """Rows as the page shows them: a missing value named, visitors only where counted."""
    return [
        {"value": MISSING if r["value"] is None else r["value"], "count": r["count"],
         **({"distinct": r["distinct"]} if has_visitors else {})}
        for r in rows
    ]  # fmt: skip


def _aligned(counts: list[int], length: int) -> list[int]:
    """The previous period's buckets matched one to one with the current period's."""
    return (counts + [0] * length)[:length]


def _referrers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top referrer hosts as shown: no host is "Direct / None", with its filter value."""
    out = []
    for row in rows:
        direct = row["value"] == MISSING
        shown = {**row, "value": DIRECT if direct else row["value"]}
        shown["filter"] = DIRECT_FILTER if direct else row["value"]
        out.append(shown)
    return out


def _agent(value: Any) -> str | None:
    return None if value is None or value == MISSING else str(value)
