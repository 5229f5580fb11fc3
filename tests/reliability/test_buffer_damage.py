"""Suite item 3, torn and corrupt buffer: a real ``headrace serve`` takes uniquely-id'd events,
stops, and has its sealed segments damaged on disk (bit flips, a damaged header, a zeroed block,
a header whose body is gone, a truncation); it restarts, and delivery into PostgreSQL loses
exactly the events of the damaged frames, with no duplicates.

The first run delivers everything to one sink (so the buffer is known whole before the damage);
the second run reads the damaged buffer from its start through a sink of its own, the same path
an undelivered backlog takes (positions per sink, none saved yet for the new one). Which events
a damage costs is computed from the segment's own layout, read before it is damaged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from headrace.buffer.local.frames import HEADER_SIZE, KIND_DATA, Frame, scan_frames
from headrace.buffer.local.segments import list_segments
from headrace.buffer.records import expand_events
from support.pgschema import DSN, throwaway_schema
from support.serverproc import ServerProcess, kill_leftovers

PIPELINE = """
buffer: {{type: local, segment_bytes: 4KiB}}
sources:
  orders: {{type: http}}
sinks:
  {sink}:
    type: postgres
    inputs: [orders]
    dsn: "{dsn}"
    schema: "{schema}"
    table: {sink}
    columns: {{n: bigint}}
    batch: {{max_age: 200ms}}
"""

Damage = Callable[[bytearray, list[Frame]], tuple[bytes, list[Frame]]]


def flip_payload(data: bytearray, frames: list[Frame]) -> tuple[bytes, list[Frame]]:
    hit = frames[len(frames) // 2]
    for i in range(4):
        data[hit.start + HEADER_SIZE + 5 + i] ^= 0xFF
    return bytes(data), [hit]


def damage_header(data: bytearray, frames: list[Frame]) -> tuple[bytes, list[Frame]]:
    hit = frames[len(frames) // 2]
    data[hit.start : hit.start + 2] = b"\x00\x00"  # the magic
    return bytes(data), [hit]


def zero_block(data: bytearray, frames: list[Frame]) -> tuple[bytes, list[Frame]]:
    first, last = len(frames) // 2 - 1, len(frames) // 2 + 1
    start, end = frames[first].start + 7, frames[last].end - 3
    data[start:end] = bytes(end - start)
    return bytes(data), frames[first : last + 1]


def header_only(data: bytearray, frames: list[Frame]) -> tuple[bytes, list[Frame]]:
    hit = frames[len(frames) // 2]
    return bytes(data[: hit.start + HEADER_SIZE] + data[hit.end :]), [hit]


def truncate(data: bytearray, frames: list[Frame]) -> tuple[bytes, list[Frame]]:
    cut = frames[len(frames) // 2]
    return bytes(data[: cut.start + 9]), [f for f in frames if f.start >= cut.start]


DAMAGES: dict[str, Damage] = {
    "bit flips": flip_payload,
    "damaged header": damage_header,
    "zeroed block": zero_block,
    "header-only frame": header_only,
    "truncation": truncate,
}
SKIPPED = 4  # every damage but the truncation is a range read past (truncation: a torn tail)


@pytest.fixture
def schema() -> Iterator[str]:
    with throwaway_schema("Damage") as name:
        yield name


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    kill_leftovers()


def post_events(url: str, requests: int, clients: int = 4) -> list[str]:
    """POST ``requests`` requests of 1-3 events each from several clients; the ids of every
    event acknowledged."""
    acked: list[str] = []
    lock = threading.Lock()

    def run(client: int) -> None:
        with httpx.Client(timeout=30) as http:
            for seq in range(client, requests, clients):
                body = [{"n": seq * 10 + part} for part in range(1 + seq % 3)]
                response = http.post(url, json=body)
                assert response.status_code == 202, response.text
                with lock:
                    acked.extend(response.json()["ids"])

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acked


def stored_ids(schema: str, table: str) -> list[str]:
    with psycopg.connect(DSN) as conn:
        try:
            query = sql.SQL("SELECT _event_id FROM {}").format(sql.Identifier(schema, table))
            return [row[0] for row in conn.execute(query)]
        except psycopg.errors.UndefinedTable:
            return []


def wait_for(schema: str, table: str, count: int, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(stored_ids(schema, table)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # anything more that would arrive (it must not)
    return stored_ids(schema, table)


def damage_segments(buffer_dir: Path) -> dict[str, set[str]]:
    """Damage one sealed segment per kind; the ids of the events each damage costs."""
    victims = []
    for name in list_segments(buffer_dir):
        frames = scan_frames((buffer_dir / name).read_bytes()).frames
        if sum(f.kind == KIND_DATA for f in frames) >= 6:
            victims.append(name)
    assert len(victims) >= len(DAMAGES), "the first run made too few segments"
    lost: dict[str, set[str]] = {}
    step = len(victims) // len(DAMAGES)
    for (kind, damage), name in zip(DAMAGES.items(), victims[::step], strict=False):
        path = buffer_dir / name
        data = bytearray(path.read_bytes())
        frames = [f for f in scan_frames(bytes(data)).frames if f.kind == KIND_DATA]
        damaged, hit = damage(data, frames)
        path.write_bytes(damaged)
        lost[kind] = {e.id for f in hit for e in expand_events(f.request())}
    return lost


def test_damage_loses_exactly_the_damaged_frames(
    tmp_path: Path, schema: str, scale: object, record: Callable[..., object]
) -> None:
    requests = scale.pick(600, 6000)  # type: ignore[attr-defined]
    data_dir = tmp_path / "data"
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE.format(sink="before", dsn=DSN, schema=schema))
    server = ServerProcess(data_dir, config=config).start()
    server.wait_ready()
    acked = post_events(f"{server.url}/v1/streams/orders/events", requests)
    assert sorted(wait_for(schema, "before", len(acked))) == sorted(acked)
    assert server.stop() == 0

    lost_by_kind = damage_segments(data_dir / "buffer")
    config.write_text(PIPELINE.format(sink="after", dsn=DSN, schema=schema))
    server = ServerProcess(data_dir, config=config).start()
    server.wait_ready()
    expected_lost = set().union(*lost_by_kind.values())
    stored = wait_for(schema, "after", len(acked) - len(expected_lost))
    metrics = server.metrics()
    quarantine = sorted(p.name for p in (data_dir / "buffer" / "quarantine").glob("*.bin"))
    assert server.stop() == 0

    lost = set(acked) - set(stored)
    duplicates = len(stored) - len(set(stored))
    for kind, ids in lost_by_kind.items():
        record(
            test=f"buffer damage: {kind}",
            load=f"{len(acked):,} events in {requests:,} requests, 4 KiB segments",
            faults=f"{kind} in one sealed segment, then restart",
            acknowledged=len(acked),
            stored=len(stored),
            lost=len(lost & ids),
            duplicates=duplicates,
            expected_lost=len(ids),
        )
    assert lost == expected_lost
    assert set(stored) <= set(acked) and duplicates == 0
    assert metrics.get("headrace_buffer_skipped_frames_total") == SKIPPED
    assert metrics.get("headrace_buffer_torn_tails_total") == 1
    assert len(quarantine) == SKIPPED
