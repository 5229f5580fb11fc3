"""Suite item 6, disk full: the data directory on a small tmpfs, filled to the last byte while
clients POST. Ingest answers 2xx only for events that are really stored (every acknowledged key
reaches PostgreSQL), else 503 or 507, never anything else; the buffer stays readable (what was
acknowledged is delivered, and a server killed afterwards starts on the same directory with no
damaged segment); once the filler is removed intake resumes within 5 s (measured).

Local buffer only: with NATS the buffer is the JetStream server's disk, and its full disk is
JetStream's to answer (the publish fails and ingest answers 503, as any refused publish).
Run with a disk reserve of 0 (every refusal is a write meeting ENOSPC) and with a reserve (the
capacity guard refuses before the disk is full, and ENOSPC answers between its measures).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reliability.conftest import Scale
from reliability.ledger import (
    Clients,
    Ledger,
    orders_pipeline,
    pg_counts,
    tally,
    wait_for_acks,
    wait_stored,
)
from support.pgschema import throwaway_schema
from support.serverproc import ServerProcess, kill_leftovers
from support.volumes import SmallDisk

DISK_MIB = 32
REFUSALS = {"503", "507"}
RESUME_DEADLINE = 5.0


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.mark.parametrize("reserve", ["0", "1MiB"], ids=["no-reserve", "reserve"])
def test_disk_full(
    tmp_path: Path, reserve: str, scale: Scale, record: Callable[..., object]
) -> None:
    hold = scale.pick(3.0, 15.0)
    with throwaway_schema("DiskFull") as schema, SmallDisk(tmp_path / "disk", DISK_MIB) as disk:
        config = tmp_path / "pipeline.yaml"
        config.write_text(orders_pipeline(
            schema, buffer=f"buffer: {{type: local, min_free_bytes: {reserve}, segment_bytes: 1MiB}}"
        ))  # fmt: skip
        server = ServerProcess(disk.path / "data", config=config, workers=2).start(timeout=60)
        server.wait_ready(timeout=60)
        ledger = Ledger()
        stored = functools.partial(pg_counts, schema, "orders")
        with Clients(f"{server.url}/v1/streams/orders/events", ledger, count=4, pace=0.01):
            wait_for_acks(ledger, 500)
            filled_at = time.monotonic()
            filler = disk.fill()
            before_fill = ledger.snapshot()
            # the buffer stays readable: what it took before goes on to PostgreSQL meanwhile
            _, delivered_while_full = wait_stored(stored, before_fill, hold)
            time.sleep(max(0.0, filled_at + hold - time.monotonic()))
            while_full = ledger.answers_between(filled_at + 1.0, time.monotonic())
            freed_at = time.monotonic()
            disk.free()
            wait_for_acks(ledger, ledger.acked() + 500, timeout=30)
        resumed = ledger.first_success_after(freed_at)
        resume_seconds = None if resumed is None else resumed - freed_at
        final, _ = wait_stored(stored, ledger.acknowledged, 60)
        metrics_before_kill = server.metrics()
        server.kill()  # and the buffer must still be readable from disk
        server.start(timeout=60)
        corrupt = server.metrics().get("headrace_buffer_corrupt_segments_total", 0)
        exit_status = server.stop()
        figures = tally(ledger, stored())

    refused = {s: n for s, n in ledger.answers.items() if not s.startswith("2")}
    record(
        load=f"4 clients, {sum(ledger.answers.values()):,} requests, {len(ledger.attempted):,} events, local buffer",
        faults=f"{DISK_MIB} MiB tmpfs filled for {hold:g}s (reserve {reserve})",
        acknowledged=figures.acknowledged,
        stored=figures.stored,
        lost=figures.lost,
        duplicates=figures.duplicates,
        unexpected=figures.unexpected,
        answers=dict(ledger.answers),
        answers_while_full=dict(while_full),
        filler_bytes=filler,
        delivered_while_full_seconds=round(delivered_while_full, 2),
        resume_seconds=None if resume_seconds is None else round(resume_seconds, 2),
        corrupt_segments=corrupt,
        refused_metric=metrics_before_kill.get(
            'headrace_requests_rejected_total{reason="buffer_full",source="orders"}'
        ),
    )
    assert refused, "the full disk refused nothing: it was not full"
    assert set(refused) <= REFUSALS, f"answers other than 2xx, 503 and 507: {refused}"
    assert figures.lost == 0, (
        f"{figures.lost} acknowledged but not stored (a false 2xx), e.g. {figures.lost_keys}"
    )
    assert figures.unexpected == 0 and figures.duplicates == 0
    assert final.keys() >= ledger.acknowledged
    assert delivered_while_full < hold, "what was buffered before the disk filled was not delivered"
    assert resume_seconds is not None and resume_seconds <= RESUME_DEADLINE, resume_seconds
    assert corrupt == 0
    assert exit_status == 0, server.log()[-3000:]
