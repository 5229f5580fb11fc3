"""Case 2: a replayed batch adds no row.

``headrace replay`` and a client resending with an id field hand the same events over again with
``may_repeat=True``; every sink must then check the ids are new. Tried while the first copy may
still be pending inside the sink (an s3 sink's spool before upload), once it is fully stored,
and once it is stored and the sink has been restarted (what it remembers survives).
"""

from __future__ import annotations

import pytest

from contract.harness import OpenSink, SinkUnderTest, assert_stores_exactly, sinks_for
from contract.sinks_under_test import SINKS
from support.events import batch, event, ids, replayed


@pytest.mark.parametrize("first_copy", ["pending", "stored", "stored-then-restarted"])
@pytest.mark.parametrize("entry", sinks_for("replay", SINKS))
def test_a_replayed_batch_adds_no_row(
    entry: SinkUnderTest, opened: OpenSink, first_copy: str
) -> None:
    first = batch(ids("e", 6))
    assert opened.write(first).failed == []
    if first_copy != "pending":
        opened.settle()
    if first_copy == "stored-then-restarted":
        opened.reopen()
    new = event("e6", 6, may_repeat=True)  # a resend may carry new events along
    again = [*replayed(first), *replayed(first[2:3]), new]  # and the same event twice
    assert opened.write(again).failed == []
    assert opened.write(again).failed == []  # replayed twice
    opened.settle()
    assert_stores_exactly(opened.rows(), [*first, new])
