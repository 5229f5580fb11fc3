"""Case 4: a transient error is retried.

While the destination is unavailable (a cut TCP proxy in front of PostgreSQL or moto, a detached
store directory), ``write`` raises ``TransientSinkError`` (the runtime's signal to retry) and
stores nothing; once the destination is back, the same batch written again is stored once.

A sink that spools (s3: the batch is gathered in the state database and committed with the
positions, uploaded later) takes the batch while its store is down; the upload (``settle``)
raises ``TransientSinkError`` and stores nothing, ``health`` says why, and once the store is
back the upload stores each event once.
"""

from __future__ import annotations

import pytest

from contract.harness import (
    OpenSink,
    SinkUnderTest,
    as_the_runtime_retries,
    assert_stores_exactly,
    sinks_for,
)
from contract.sinks_under_test import SINKS
from headrace.errors import TransientSinkError
from support.events import batch, ids, replayed


@pytest.mark.parametrize(
    "entry", sinks_for("transient", SINKS, lambda entry: entry.outage_fails == "write")
)
def test_write_raises_transient_while_unavailable_and_stores_once_when_back(
    entry: SinkUnderTest, opened: OpenSink
) -> None:
    events = batch(ids("e", 5))
    checkpoint = opened.checkpoint()
    with opened.outage.during():
        for _attempt in range(2):  # and again: a retry during the outage fails the same way
            with pytest.raises(TransientSinkError):
                opened.write(events, checkpoint)
        assert opened.sink.health() is not None
    assert opened.rows() == []
    assert opened.positions() == ({}, set())
    as_the_runtime_retries(lambda: opened.write(events, checkpoint))
    opened.settle()
    assert_stores_exactly(opened.rows(), events)
    assert opened.sink.health() is None
    if entry.commits_checkpoint:
        assert opened.positions() == (dict(checkpoint.ack.positions), set())


@pytest.mark.parametrize(
    "entry", sinks_for("transient", SINKS, lambda entry: entry.outage_fails == "settle")
)
def test_uploads_raise_transient_while_unavailable_and_store_once_when_back(
    entry: SinkUnderTest, opened: OpenSink
) -> None:
    events = batch(ids("e", 5))
    checkpoint = opened.checkpoint()
    with opened.outage.during():
        assert opened.write(events, checkpoint).failed == []  # into the spool
        assert opened.positions() == (dict(checkpoint.ack.positions), set())
        for _attempt in range(2):
            with pytest.raises(TransientSinkError):
                opened.settle()
        assert opened.sink.health() is not None
    assert opened.rows() == []
    as_the_runtime_retries(opened.settle)
    assert_stores_exactly(opened.rows(), events)
    assert opened.sink.health() is None
    # nothing was left behind to upload twice, and a replay of the batch adds nothing
    assert opened.write(replayed(events)).failed == []
    opened.settle()
    assert_stores_exactly(opened.rows(), events)
