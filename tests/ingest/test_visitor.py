"""Visitor ids for unique-visitor counts: a daily salted hash of address and User-Agent."""

from __future__ import annotations

import json
import stat
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from headrace.buffer.local.reader import SegmentReader
from headrace.buffer.records import expand_events
from headrace.config.load import parse_pipeline
from headrace.ingest.visitor import SALT_DIR, VisitorHasher
from headrace.server.app import WorkerApp


def at(day: str, hour: int = 12) -> int:
    """µs of ``hour`` o'clock UTC on ``day``."""
    return int(datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp() * 1_000_000)


def test_one_day_one_id_per_address_and_agent(data_dir: Path) -> None:
    hasher = VisitorHasher(data_dir, secret="")
    first = hasher.visitor("203.0.113.9", "Firefox", at("2026-03-01", 1))
    assert first is not None and len(first) == 16 and "203" not in first
    assert hasher.visitor("203.0.113.9", "Firefox", at("2026-03-01", 23)) == first
    assert hasher.visitor("203.0.113.9", "Chrome", at("2026-03-01")) != first
    assert hasher.visitor("203.0.113.10", "Firefox", at("2026-03-01")) != first
    assert hasher.visitor("203.0.113.9", "Firefox", at("2026-03-02")) != first  # a new day
    assert hasher.visitor(None, "Firefox", at("2026-03-01")) is None


def test_workers_of_one_machine_share_the_days_random_salt(data_dir: Path) -> None:
    one, two = VisitorHasher(data_dir, secret=""), VisitorHasher(data_dir, secret="")
    assert one.visitor("198.51.100.1", "x", at("2026-03-01")) == two.visitor(
        "198.51.100.1", "x", at("2026-03-01")
    )
    salt = data_dir / SALT_DIR / "2026-03-01"
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    assert len(bytes.fromhex(salt.read_text())) == 32
    # another data dir (another machine without a shared secret): another salt
    other = VisitorHasher(data_dir / "elsewhere", secret="")
    assert other.visitor("198.51.100.1", "x", at("2026-03-01")) != one.visitor(
        "198.51.100.1", "x", at("2026-03-01")
    )


def test_a_days_salt_is_deleted_two_days_later(data_dir: Path) -> None:
    hasher = VisitorHasher(data_dir, secret="")
    for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
        hasher.visitor("192.0.2.1", "x", at(day))
    assert sorted(p.name for p in (data_dir / SALT_DIR).iterdir()) == [
        "2026-03-01", "2026-03-02", "2026-03-03"
    ]  # fmt: skip
    hasher.visitor("192.0.2.1", "x", at("2026-03-04"))
    assert sorted(p.name for p in (data_dir / SALT_DIR).iterdir()) == [
        "2026-03-02", "2026-03-03", "2026-03-04"
    ]  # fmt: skip


def test_a_configured_secret_gives_every_machine_the_same_ids_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADRACE_VISITOR_SECRET", "s3cret")
    one, two = VisitorHasher(tmp_path / "a"), VisitorHasher(tmp_path / "b")
    moment = at("2026-03-01")
    assert one.visitor("192.0.2.7", "x", moment) == two.visitor("192.0.2.7", "x", moment)
    assert one.salt(date(2026, 3, 1)) != one.salt(date(2026, 3, 2))  # the date is in the HMAC
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert VisitorHasher(tmp_path / "a", secret="other").visitor("192.0.2.7", "x", moment) != (
        one.visitor("192.0.2.7", "x", moment)
    )


@pytest.mark.anyio
async def test_visitor_in_a_map_hashes_the_request_and_keeps_no_address(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.delenv("HEADRACE_VISITOR_SECRET", raising=False)
    pipeline = parse_pipeline(json.dumps({
        "sources": {"hits": {"type": "http", "map": {"copy": {"visitor": "$visitor"}}}},
        "sinks": {"lake": {"type": "lake", "inputs": ["hits"]}},
    }))  # fmt: skip
    app = WorkerApp(pipeline, data_dir)
    await app.startup()
    try:
        for agent in ("Firefox", "Firefox", "Chrome"):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                sent = await c.post("/v1/streams/hits/events", json={"pagePath": "/"},
                                    headers={"user-agent": agent})  # fmt: skip
                assert sent.status_code == 202
    finally:
        await app.shutdown()
    items = SegmentReader(data_dir / "buffer", "test", {}, set()).poll(1 << 20).items
    events = [e for item in items for e in expand_events(item.request)]
    visitors = [e.data["visitor"] for e in events]
    assert visitors[0] == visitors[1] != visitors[2] and len(visitors[0]) == 16
    assert all("203.0.113.9" not in json.dumps(e.data) for e in events)
    today = datetime.now(UTC).date().isoformat()
    assert (data_dir / SALT_DIR / today).exists()
