"""Case 5: the declared capabilities hold.

- the built sink claims exactly what its entry says (``capabilities``, ``commits_checkpoint``),
  so a change in what a sink claims is met here and the cases that follow it;
- ``append``: events are added;
- ``merge``: a later event with the same key replaces the stored one and never adds a row, and a
  replayed earlier event does not bring the older data back;
- ``raw``: an event carrying bytes a Firehose function returned (``Event.raw``) is stored as it
  is, without its final newline (the lake's ``_raw`` column, an NDJSON line). A sink without
  ``raw`` is never handed such events by the runtime, so nothing is tried on it here.
"""

from __future__ import annotations

import pytest

from contract.harness import OpenSink, SinkUnderTest, assert_stores_exactly, by_key, sinks_for
from contract.sinks_under_test import SINKS
from headrace.sinks.base import APPEND, MERGE, RAW
from support.events import batch, event, ids, raw_event, replayed


@pytest.mark.parametrize("entry", sinks_for("capabilities", SINKS))
def test_the_sink_claims_what_its_entry_says(entry: SinkUnderTest, opened: OpenSink) -> None:
    assert opened.sink.capabilities == entry.capabilities
    assert opened.sink.commits_checkpoint is entry.commits_checkpoint


@pytest.mark.parametrize("entry", sinks_for("append", SINKS, lambda e: APPEND in e.capabilities))
def test_append_adds_events(entry: SinkUnderTest, opened: OpenSink) -> None:
    first = batch(ids("a", 3))
    second = batch(ids("b", 4), start=10)
    assert opened.write(first).failed == []
    opened.settle()
    assert_stores_exactly(opened.rows(), first)
    assert opened.write(second).failed == []
    opened.settle()
    assert_stores_exactly(opened.rows(), [*first, *second])


@pytest.mark.parametrize("entry", sinks_for("merge", SINKS, lambda e: MERGE in e.capabilities))
def test_merge_replaces_the_stored_record_of_a_key(entry: SinkUnderTest, opened: OpenSink) -> None:
    earlier, later = event("m1", 1, key="k1"), event("m2", 2, key="k1")
    assert opened.write([earlier]).failed == []
    assert opened.write([later]).failed == []  # in a later batch
    in_one_batch = [event("m3", 3, key="k2"), event("m4", 4, key="k2")]
    assert opened.write(in_one_batch).failed == []
    opened.settle()
    assert by_key(opened.rows()) == {"k1": [later.data], "k2": [in_one_batch[1].data]}


@pytest.mark.parametrize(
    "entry", sinks_for("merge-replay", SINKS, lambda e: MERGE in e.capabilities)
)
def test_merge_a_replayed_earlier_event_does_not_undo_a_later_one(
    entry: SinkUnderTest, opened: OpenSink
) -> None:
    earlier, later = event("m1", 1, key="k1"), event("m2", 2, key="k1")
    assert opened.write([earlier]).failed == []
    assert opened.write([later]).failed == []
    assert opened.write(replayed([earlier])).failed == []  # headrace replay of a time range
    opened.settle()
    assert by_key(opened.rows()) == {"k1": [later.data]}


RAW_RECORD = b'e1;"quoted, not JSON";\xc3\xbcml\tand a tab\n'
"""A CSV-ish line as a Firehose function returns it: quotes, UTF-8, a tab, a final newline."""


@pytest.mark.parametrize("entry", sinks_for("raw", SINKS, lambda e: RAW in e.capabilities))
def test_raw_records_are_stored_as_they_are(entry: SinkUnderTest, opened: OpenSink) -> None:
    plain = event("e0", 0)
    raw = raw_event("e1", RAW_RECORD, 1)
    assert opened.write([plain, raw]).failed == []
    assert opened.write(replayed([raw])).failed == []  # replayed: still one line
    opened.settle()
    rows = opened.rows()
    raws = [row for row in rows if "_raw" in row.data]
    assert [row.data for row in raws] == [{"_raw": RAW_RECORD[:-1].decode()}]
    assert raws[0].key in ("e1", None)  # the event id where the sink stores one
    assert_stores_exactly(rows, [plain])
