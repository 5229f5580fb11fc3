"""Case 3: a record the sink refuses for good goes to the dead letters with its reason, and the
rest of its batch is stored.

Most sinks return it in ``WriteResult.failed`` (the runtime saves it as a dead letter; a sink that
commits the checkpoint saves it itself, with the positions). An s3 sink writing Parquet files a
value that does not fit the declared schema under its error prefix instead, in Firehose's error
format (``format-conversion-failed/``), as Firehose does: nothing goes to the dead letters.
"""

from __future__ import annotations

import pytest

from contract.harness import OpenSink, SinkUnderTest, assert_stores_exactly, sinks_for
from contract.sinks_under_test import SINKS
from headrace.types import Event
from support.events import batch, event, ids, replayed


def _batch_with_refused(entry: SinkUnderTest) -> tuple[list[Event], Event]:
    assert entry.refusal is not None
    good = batch(ids("e", 6))
    bad = entry.refusal.make(event("bad", 99))
    return [*good[:3], bad, *good[3:]], bad


@pytest.mark.parametrize(
    "entry",
    sinks_for(
        "terminal",
        SINKS,
        lambda entry: entry.refusal is not None and entry.refusal.filed == "dead_letters",
    ),
)
def test_a_refused_record_is_returned_with_its_reason_and_the_rest_stored(
    entry: SinkUnderTest, opened: OpenSink
) -> None:
    assert entry.refusal is not None
    events, bad = _batch_with_refused(entry)
    (failed,) = opened.write(events).failed
    assert (failed.event, failed.reason) == (bad, entry.refusal.reason)
    assert entry.refusal.mentions in failed.error
    opened.settle()
    assert_stores_exactly(opened.rows(), [e for e in events if e is not bad])
    letters = [(d.event_id, d.reason, d.error) for d in opened.dead_letters()]
    if entry.commits_checkpoint:  # saved with the positions, in the sink's transaction
        assert letters == [(failed.event.id, failed.reason, failed.error)]
    else:  # the runtime saves it
        assert letters == []


@pytest.mark.parametrize(
    "entry",
    sinks_for(
        "terminal",
        SINKS,
        lambda entry: entry.refusal is not None and entry.refusal.filed == "error_output",
    ),
)
def test_a_refused_record_is_filed_in_the_error_output_and_the_rest_stored(
    entry: SinkUnderTest, opened: OpenSink
) -> None:
    assert entry.refusal is not None
    events, bad = _batch_with_refused(entry)
    assert opened.write(events).failed == []  # filed by the sink itself
    assert opened.write(replayed(events)).failed == []  # and filed once, however often replayed
    opened.settle()
    assert_stores_exactly(opened.rows(), [e for e in events if e is not bad])
    (failure,) = opened.failures()
    assert (failure.event_id, failure.reason) == ("bad", entry.refusal.reason)
    assert entry.refusal.mentions in failure.error
    assert opened.dead_letters() == []
