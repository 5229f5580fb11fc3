"""Case 1: redelivery adds no row.

The runtime delivers at least once. A sink that leaves the checkpoint to the runtime may be
handed the very same batch again (a crash between its write and the saved positions), so the
same event ids must not add rows. A sink that commits the checkpoint itself is never handed a
batch again once ``write`` returned: its positions (and the dead letters the checkpoint carries)
are saved in the same transaction as the data, and a failed write saves neither.
"""

from __future__ import annotations

import sqlite3

import pytest

from contract.harness import (
    SEGMENT,
    OpenSink,
    SinkUnderTest,
    assert_stores_exactly,
    sinks_for,
)
from contract.sinks_under_test import SINKS
from headrace.buffer.local.reader import PositionAck
from headrace.types import Event, FailedRecord
from support.events import SOURCE, STREAM, T0, batch, ids


@pytest.mark.parametrize(
    "entry", sinks_for("redelivery", SINKS, lambda entry: not entry.commits_checkpoint)
)
def test_the_same_batch_again_stores_each_event_once(
    entry: SinkUnderTest, opened: OpenSink
) -> None:
    first = batch(ids("e", 5))
    assert opened.write(first).failed == []
    assert opened.write(first).failed == []  # the positions were not saved: the same batch again
    # after a crash the next batch may hold the redelivered events and newer ones
    later = batch(ids("e", 8))
    assert opened.write(later).failed == []
    opened.settle()
    assert_stores_exactly(opened.rows(), later)
    assert opened.positions() == ({}, set())  # left to the runtime


@pytest.mark.parametrize(
    "entry", sinks_for("redelivery", SINKS, lambda entry: entry.commits_checkpoint)
)
def test_the_checkpoint_is_saved_with_the_data(entry: SinkUnderTest, opened: OpenSink) -> None:
    undecodable = Event(f"{SEGMENT}@40", STREAM, SOURCE, T0, {"_raw": "{not json"})
    applied: list[set[str]] = []
    checkpoint = opened.checkpoint(
        finished={"000000000000.seg"},
        dead=[FailedRecord(undecodable, "decode_error", "not JSON")],
        on_apply=[lambda conn, undelivered: applied.append(set(undelivered))],
    )
    acknowledged = checkpoint.ack
    assert isinstance(acknowledged, PositionAck)
    acknowledged.positions["000000000000.seg"] = 9000
    events = batch(ids("e", 4))
    assert opened.write(events, checkpoint).failed == []
    assert opened.positions() == (dict(acknowledged.positions), {"000000000000.seg"})
    assert [(d.event_id, d.reason) for d in opened.dead_letters()] == [
        (undecodable.id, "decode_error")
    ]
    assert applied == [{undecodable.id}]  # a transform's state is saved in the same transaction
    opened.settle()
    assert_stores_exactly(opened.rows(), events)


class InjectedFailure(Exception):
    """Raised inside the sink's transaction, after the positions were written in it."""


def _fail(conn: sqlite3.Connection, undelivered: set[str]) -> None:
    raise InjectedFailure("injected while the checkpoint was being saved")


@pytest.mark.parametrize(
    "entry", sinks_for("redelivery", SINKS, lambda entry: entry.commits_checkpoint)
)
def test_a_failed_write_saves_neither_data_nor_positions(
    entry: SinkUnderTest, opened: OpenSink
) -> None:
    events = batch(ids("e", 4))
    failing = opened.checkpoint(on_apply=[_fail])
    with pytest.raises(InjectedFailure):
        opened.write(events, failing)
    assert opened.positions() == ({}, set())
    assert opened.dead_letters() == []
    opened.settle()
    assert opened.rows() == []
    # the runtime hands the batch over again: stored once, positions saved
    retry = opened.checkpoint()
    retry.ack.positions = dict(failing.ack.positions)
    assert opened.write(events, retry).failed == []
    assert opened.positions() == (dict(failing.ack.positions), set())
    opened.settle()
    assert_stores_exactly(opened.rows(), events)
