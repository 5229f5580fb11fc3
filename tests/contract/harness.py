"""The sink contract suite's harness: what a sink under test is, and a sink opened for one test.

A ``SinkUnderTest`` says, once per sink (and per configuration worth its own run), everything
the cases need to know: how to make its destination and config for one test (``provision``),
how to build and open it from that config, how to read back what it stores, how to make a record
it refuses for good, how to make its destination unavailable, and which capabilities it claims.
The cases (``test_*.py`` here) are written once against ``OpenSink``; ``sinks_for(case, ...)``
parametrizes them over every sink under test the case applies to. See ``sinks_under_test.py``
for the entries and how to add one.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import pytest
import yaml

from headrace.errors import TransientSinkError
from headrace.sinks.base import Sink
from headrace.storage.state import Checkpoint, DeadLetter
from headrace.types import Event, WriteResult
from support.buffer import checkpoint
from support.events import KEY_FIELD, SOURCE
from support.statedb import dead_letters, saved_positions
from support.tcpproxy import TcpProxy

SINK_ID = "contract"
SEGMENT = "000000000001.seg"
"""The buffer segment the checkpoints of this suite point into."""
CASES = frozenset({
    "redelivery", "replay", "terminal", "transient", "capabilities", "append", "merge",
    "merge-replay", "raw",
})  # fmt: skip
"""The cases ``known_bugs`` may name (``sinks_for``'s first argument)."""
T = TypeVar("T")


class Row(NamedTuple):
    """One stored record as a sink under test reads it back."""

    key: str | None
    """The event id where the sink stores it, else the record's key (``requestid``): DynamoDB's
    partition key, a field of an object in S3; ``None`` for a raw line (no key in it)."""
    data: dict[str, Any]
    """The record's fields (a stored null reads as absent; a raw record is ``{"_raw": text}``)."""


class Failure(NamedTuple):
    """One record filed in a sink's own error output (not the dead-letter store)."""

    event_id: str
    reason: str
    error: str


@dataclass(frozen=True)
class Outage:
    """How to make a destination unavailable (``begin``) and available again (``end``), by real
    means: a cut TCP proxy, a detached store directory."""

    begin: Callable[[], None]
    end: Callable[[], None]

    @contextlib.contextmanager
    def during(self) -> Iterator[None]:
        """Unavailable inside the block; available again after it, whatever happened."""
        self.begin()
        try:
            yield
        finally:
            self.end()


@dataclass
class Destination:
    """What ``SinkUnderTest.provision`` makes for one test."""

    config: dict[str, Any]
    """The sink's config, as a pipeline file's ``sinks.<id>`` would declare it."""
    read: Callable[[], list[Row]]
    """Everything the destination holds now, read directly (not through the sink or a proxy)."""
    outage: Outage | None = None
    """Required when the entry's ``outage_fails`` is set."""
    read_failures: Callable[[], list[Failure]] | None = None
    """The sink's own error output; required when its ``Refusal.filed`` is ``error_output``."""


@dataclass(frozen=True)
class Refusal:
    """A record the sink refuses for good, and how the refusal shows."""

    make: Callable[[Event], Event]
    """A good event → the same event with what the sink refuses."""
    reason: str
    """``FailedRecord.reason`` (``type_mismatch``...), or the error output's error code."""
    mentions: str
    """Text the error message must contain (it must say what is wrong)."""
    filed: Literal["dead_letters", "error_output"] = "dead_letters"
    """``dead_letters``: returned in ``WriteResult.failed`` (and, for a sink that commits the
    checkpoint, saved as dead letters with it); ``error_output``: the sink files it in its
    destination's error output itself (s3 Parquet, as Firehose does)."""


class Env:
    """What ``provision`` is given: the test's directories, the moto server (started on first
    use), proxies, and clean-up after the test."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, stack: contextlib.ExitStack):
        self.request = request
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.stack = stack

    @property
    def moto_url(self) -> str:
        """The session's moto server (S3 + DynamoDB)."""
        url: str = self.request.getfixturevalue("moto_url")
        return url

    def proxy(self, host: str, port: int) -> TcpProxy:
        """A cuttable proxy to ``host:port``, closed after the test."""
        return self.stack.enter_context(TcpProxy((host, port)))

    def enter(self, manager: contextlib.AbstractContextManager[T]) -> T:
        """Enter ``manager`` for the rest of the test."""
        return self.stack.enter_context(manager)

    @staticmethod
    def unique(prefix: str) -> str:
        """A name no other test uses (buckets, tables on the shared moto server)."""
        return f"{prefix}-{uuid.uuid4().hex[:12]}"


def build_from_config(sink_id: str, config: dict[str, Any], data_dir: Path) -> Sink:
    """The sink a pipeline file declaring ``config`` as ``sinks.<sink_id>`` gets (not opened):
    the config goes through the same parsing and checks as a user's file."""
    from headrace.config.load import parse_pipeline
    from headrace.sinks import build_sink

    text = yaml.safe_dump({"sources": {SOURCE: {"type": "http"}}, "sinks": {sink_id: config}})
    pipeline = parse_pipeline(text, file="contract-pipeline.yaml", env={})
    return build_sink(sink_id, pipeline.sinks[sink_id], data_dir)


def nothing_pending(sink: Sink) -> None:
    """``settle`` of a sink that stores a batch before ``write`` returns."""


@dataclass(frozen=True)
class SinkUnderTest:
    """One sink (in one configuration) the contract suite runs over; see the module docstring."""

    id: str
    """The pytest id, e.g. ``s3-parquet-moto``."""
    capabilities: frozenset[str]
    """What the sink claims (``sink.capabilities``); a case runs for each capability claimed."""
    commits_checkpoint: bool
    """Whether the sink saves the checkpoint in its own transaction (``sink.commits_checkpoint``)."""
    provision: Callable[[Env], Destination]
    """Make this test's destination (schema, bucket, table, directory, proxy) and the config."""
    refusal: Refusal | None = None
    """A record it refuses for good, or ``None`` if it has none."""
    outage_fails: Literal["write", "settle"] | None = None
    """Where an unavailable destination shows: ``write`` raises ``TransientSinkError``, or
    (a sink that spools) ``write`` takes the batch and ``settle`` raises it; ``None``: no way
    to make the destination unavailable here."""
    settle: Callable[[Sink], None] = nothing_pending
    """Make whatever the sink still holds back fully stored (s3: upload the spool), raising what
    the store raises."""
    build: Callable[[str, dict[str, Any], Path], Sink] = build_from_config
    """Build the sink (not opened) from its config."""
    known_bugs: Mapping[str, str] = field(default_factory=dict)
    """Case → why it fails today: the case is marked ``xfail(strict=True)`` for this sink."""

    def __post_init__(self) -> None:
        unknown = set(self.known_bugs) - CASES
        if unknown:
            raise ValueError(f"{self.id}: known_bugs names unknown cases {sorted(unknown)}")


def sinks_for(
    case: str,
    entries: Iterable[SinkUnderTest],
    where: Callable[[SinkUnderTest], bool] = lambda entry: True,
) -> list[Any]:
    """``entries`` the case applies to, as pytest parameters with their ids (and an
    ``xfail(strict=True)`` where the entry lists the case in ``known_bugs``)."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}")
    params = []
    for entry in entries:
        if not where(entry):
            continue
        marks = []
        if case in entry.known_bugs:
            marks.append(pytest.mark.xfail(strict=True, reason=entry.known_bugs[case]))
        params.append(pytest.param(entry, id=entry.id, marks=marks))
    if not params:
        raise ValueError(f"no sink under test for case {case!r}")  # never a silent empty case
    return params


class OpenSink:
    """A sink under test, provisioned, built and opened for one test (closed after it)."""

    def __init__(self, entry: SinkUnderTest, env: Env) -> None:
        self.entry = entry
        self.env = env
        self.destination = entry.provision(env)
        if entry.outage_fails is not None and self.destination.outage is None:
            raise AssertionError(f"{entry.id}: outage_fails is set but provision gave no outage")
        self._offset = 0
        self.sink = self._open()
        env.stack.callback(lambda: self.sink.close())

    def _open(self) -> Sink:
        sink = self.entry.build(SINK_ID, self.destination.config, self.env.data_dir)
        sink.open()
        return sink

    @property
    def outage(self) -> Outage:
        """The destination's outage (the entry must have one)."""
        assert self.destination.outage is not None
        return self.destination.outage

    def reopen(self) -> None:
        """Close the sink and open a new one on the same destination and data directory (a
        restart of the process)."""
        self.sink.close()
        self.sink = self._open()

    def checkpoint(self, **kw: Any) -> Checkpoint:
        """A checkpoint for the next batch: one segment, a little further each time."""
        self._offset += 100
        return checkpoint(SINK_ID, {SEGMENT: self._offset}, **kw)

    def write(self, events: Sequence[Event], checkpoint: Checkpoint | None = None) -> WriteResult:
        """``sink.write`` as the runtime calls it."""
        return self.sink.write(list(events), checkpoint or self.checkpoint())

    def settle(self) -> None:
        """Store fully what the sink may still hold back."""
        self.entry.settle(self.sink)

    def rows(self) -> list[Row]:
        """What the destination holds now."""
        return self.destination.read()

    def failures(self) -> list[Failure]:
        """What the sink filed in its own error output."""
        assert self.destination.read_failures is not None, f"{self.entry.id} has no error output"
        return self.destination.read_failures()

    def positions(self) -> tuple[dict[str, int], set[str]]:
        """The positions saved for the sink in the state database."""
        return saved_positions(self.env.data_dir, SINK_ID)

    def dead_letters(self) -> list[DeadLetter]:
        """The sink's dead letters in the state database."""
        return dead_letters(self.env.data_dir, SINK_ID)


def as_the_runtime_retries(action: Callable[[], T], attempts: int = 5) -> T:
    """``action()``, retried on ``TransientSinkError`` as the delivery worker does (a bounded
    number of times, so a sink that never recovers fails the test)."""
    errors: list[str] = []
    for attempt in range(attempts):
        try:
            return action()
        except TransientSinkError as exc:
            errors.append(str(exc))
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError(f"still failing after {attempts} attempts: {errors}")


def by_key(rows: Iterable[Row]) -> dict[Any, list[dict[str, Any]]]:
    """Stored records (not raw ones) grouped by their ``requestid``."""
    grouped: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        if "_raw" not in row.data:
            grouped.setdefault(row.data.get(KEY_FIELD), []).append(row.data)
    return grouped


def assert_stores_exactly(rows: Iterable[Row], events: Iterable[Event]) -> None:
    """The destination holds each of ``events`` exactly once, with its data, and nothing else
    (raw records aside)."""
    rows = list(rows)
    expected = {event.data[KEY_FIELD]: event.data for event in events}
    grouped = by_key(rows)
    repeated = {k: len(v) for k, v in grouped.items() if len(v) > 1}
    assert not repeated, f"stored more than once: {repeated}"
    assert sorted(grouped, key=str) == sorted(expected, key=str)
    assert {k: v[0] for k, v in grouped.items()} == expected
    for row in rows:  # where the key is the event id, it is the event's
        if row.key is not None and "_raw" not in row.data:
            assert row.key == row.data[KEY_FIELD], row


__all__ = [
    "CASES",
    "SEGMENT",
    "SINK_ID",
    "Destination",
    "Env",
    "Failure",
    "OpenSink",
    "Outage",
    "Refusal",
    "Row",
    "SinkUnderTest",
    "as_the_runtime_retries",
    "assert_stores_exactly",
    "build_from_config",
    "by_key",
    "nothing_pending",
    "sinks_for",
]
