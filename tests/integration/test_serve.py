"""``headrace serve`` as a user runs it: a subprocess spoken to over HTTP and the CLI."""

from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from headrace.storage import failures
from support.serverproc import ServerProcess


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def events(server: ServerProcess, stream: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/streams/{stream}/events", params=params, timeout=10)
    if response.status_code == 404 and response.json()["error"] == "unknown_stream":
        return []  # nothing delivered to it yet
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def test_post_get_export_and_clean_shutdown(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        server.wait_ready()
        url = f"{server.url}/v1/streams/clicks/events"
        sent = [
            {"requestid": f"r{i}", "action": "click" if i % 2 else "view", "n": i}
            for i in range(10)
        ]
        assert httpx.post(url, json=sent).status_code == 202
        found = eventually(lambda: len(events(server, "clicks")) == 10)
        assert found, server.log()
        assert [e["data"]["n"] for e in events(server, "clicks", action="view", limit="3")] == [
            8,
            6,
            4,
        ]
        out = tmp_path / "clicks.csv"
        cli(
            "export",
            "--data-dir",
            str(data_dir),
            "--stream",
            "clicks",
            "--where",
            "action=click",
            "-o",
            str(out),
        )
        lines = out.read_text().splitlines()
        assert lines[0] == "id,received_at,time,requestid,action,n,_extra"
        assert [line.split(",")[3] for line in lines[1:]] == [f"r{i}" for i in range(1, 10, 2)]
        metrics = server.metrics()
        assert metrics['headrace_events_accepted_total{source="events"}'] == 10
        assert eventually(
            lambda: server.metrics().get('headrace_events_delivered_total{sink="lake"}') == 10
        )
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log()


REPLAY_CONFIG = """
sources:
  clicks: {type: http}
sinks:
  first: {type: lake, inputs: [clicks], path: "%s/first"}
  second: {type: lake, inputs: [clicks], path: "%s/second"}
"""


def test_replay_redelivers_a_time_range_to_one_sink(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(REPLAY_CONFIG % (tmp_path, tmp_path))
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, config=config).start()
    try:
        since = int(time.time() * 1000)
        assert (
            httpx.post(
                f"{server.url}/v1/streams/clicks/events", json=[{"n": 1}, {"n": 2}]
            ).status_code
            == 202
        )
        until = int(time.time() * 1000) + 1
        db = sqlite3.connect(data_dir / "state.db")

        def rows(sink: str) -> int:
            try:
                sql = "SELECT COALESCE(SUM(rows), 0) FROM lake_files WHERE sink = ?"
                return int(db.execute(sql, (sink,)).fetchone()[0])
            except sqlite3.OperationalError:
                return -1  # the delivery process has not created its tables yet

        assert eventually(lambda: rows("second") == 2)
        db.execute("DELETE FROM lake_files WHERE sink = 'second'")  # the second sink lost its data
        db.commit()
        result = cli("replay", "--config", str(config), "--data-dir", str(data_dir), "--stream", "clicks",
                     "--since", str(since), "--until", str(until), "--sink", "second")  # fmt: skip
        assert "queued 2 event(s)" in result.stdout
        assert eventually(lambda: rows("second") == 2)
        time.sleep(1.5)
        assert rows("first") == 2  # untouched: replay went to one sink
        again = cli("replay", "--config", str(config), "--data-dir", str(data_dir), "--stream", "clicks",
                    "--since", str(since), "--until", str(until))  # fmt: skip
        assert "queued 2 event(s)" in again.stdout
        time.sleep(2)
        assert rows("first") == 2  # same ids: not stored twice
        assert rows("second") == 2
    finally:
        assert server.stop() == 0


DLQ_CONFIG = """
sources:
  orders: {type: http}
sinks:
  lake:
    type: lake
    inputs: [orders]
    streams:
      orders: {fields: {amount: %s}}
"""


def test_dead_letters_can_be_listed_shown_and_replayed_after_a_fix(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(DLQ_CONFIG % "int64")
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, config=config).start()
    try:
        body = [{"amount": 5}, {"amount": "five"}]
        assert httpx.post(f"{server.url}/v1/streams/orders/events", json=body).status_code == 202
        listed = eventually(
            lambda: "type_mismatch" in cli("dlq", "list", "--data-dir", str(data_dir)).stdout
        )
        assert listed
        assert eventually(
            lambda: (
                server.metrics().get(
                    'headrace_events_failed_total{reason="type_mismatch",sink="lake"}'
                )
                == 1
            )
        )
        shown = cli("dlq", "show", "--data-dir", str(data_dir), "1").stdout
        assert '"amount": "five"' in shown and "declared int64" in shown
    finally:
        assert server.stop() == 0
    config.write_text(DLQ_CONFIG % "string")  # the schema is fixed...
    server = ServerProcess(data_dir, config=config).start()
    try:
        assert "queued 1 dead letter(s)" in cli("dlq", "replay", "--data-dir", str(data_dir)).stdout
        assert eventually(lambda: len(events(server, "orders")) == 2)
        assert "no dead letters" in cli("dlq", "list", "--data-dir", str(data_dir)).stdout
    finally:
        assert server.stop() == 0


def test_a_replayed_dead_letter_that_fails_again_updates_its_own_letter(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(DLQ_CONFIG % "int64")
    data_dir = tmp_path / "data"

    def letters() -> list[tuple[Any, ...]]:
        with failures.reading(data_dir, failures.DEAD_LETTERS) as conn:  # None until the first
            return (
                []
                if conn is None
                else conn.execute(
                    "SELECT event_id, attempts, failed_at_us, replayed_at_us FROM dead_letters"
                ).fetchall()
            )

    server = ServerProcess(data_dir, config=config).start()
    try:
        body = [{"amount": "one"}, {"amount": "two"}, {"amount": 3}]
        assert httpx.post(f"{server.url}/v1/streams/orders/events", json=body).status_code == 202
        first = eventually(lambda: len(letters()) == 2 and letters())
        assert first, server.log()
        assert {row[1] for row in first} == {1}
        for attempt in (2, 3):  # the schema is not fixed: each replay fails again
            out = cli("dlq", "replay", "--data-dir", str(data_dir)).stdout
            assert "queued 2 dead letter(s)" in out
            again = eventually(
                lambda attempt=attempt: (
                    all(row[1] == attempt and row[3] is None for row in letters()) and letters()
                )
            )
            assert again, letters()
            assert len(again) == 2  # no new letters
            assert {row[0] for row in again} == {row[0] for row in first}
            assert all(
                new[2] > old[2] for new, old in zip(sorted(again), sorted(first), strict=True)
            )
            first = again
        listed = cli("dlq", "list", "--data-dir", str(data_dir)).stdout
        assert listed.count("type_mismatch") == 2
    finally:
        assert server.stop() == 0


def test_a_torn_tail_is_cut_counted_and_logged_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, workers=1).start()
    assert httpx.post(f"{server.url}/v1/streams/s/events", json={"a": 1}).status_code == 202
    server.kill()
    segment = sorted((data_dir / "buffer").glob("*-w0.seg"))[-1]
    with open(segment, "ab") as f:
        f.write(b"HR\x01\x00\xff\x00\x00\x00half-written")
    server.start()
    try:
        assert server.metrics()["headrace_buffer_torn_tails_total"] == 1
        assert "torn tail" in server.log()
        assert eventually(lambda: len(events(server, "s")) == 1)
    finally:
        assert server.stop() == 0


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        second = cli("serve", "--data-dir", str(data_dir), "--port", "0", check=False)
        assert (
            second.returncode == 1
            and "another headrace process (serve, ingest or deliver) already runs" in second.stderr
        )
    finally:
        assert server.stop() == 0


SLOW_BATCH_CONFIG = """
sources:
  s: {type: http}
sinks:
  lake: {type: lake, inputs: [s], batch: {max_age: 1h}}
"""


def test_sigterm_delivers_the_batch_in_hand(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(SLOW_BATCH_CONFIG)
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, config=config).start()
    assert (
        httpx.post(f"{server.url}/v1/streams/s/events", json=[{"n": 1}, {"n": 2}]).status_code
        == 202
    )
    time.sleep(1)  # read into a batch that would wait an hour
    assert server.stop() == 0
    db = sqlite3.connect(data_dir / "state.db")
    assert db.execute("SELECT SUM(rows) FROM lake_files").fetchone()[0] == 2


def test_children_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    import os
    import signal

    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    children = server.children()
    assert len(children) >= 3  # two ingest workers, delivery (and multiprocessing's tracker)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)  # only the supervisor
    server.proc.wait()

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in children)

    assert eventually(gone), "orphaned workers kept running"
    server.start()  # and the data dir is free for a new server
    assert server.stop() == 0


def test_export_spreadsheet_safe(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        server.wait_ready()
        sent = [{"page": "=HYPERLINK(1)", "n": -1}, {"page": "/home", "n": 2}]
        assert httpx.post(f"{server.url}/v1/streams/pages/events", json=sent).status_code == 202
        assert eventually(lambda: len(events(server, "pages")) == 2), server.log()
        for flag, first in ((), "=HYPERLINK(1)"), (("--spreadsheet-safe",), "'=HYPERLINK(1)"):
            out = tmp_path / "pages.csv"
            cli("export", "--data-dir", str(data_dir), "--stream", "pages", *flag, "-o", str(out))
            rows = list(csv.DictReader(io.StringIO(out.read_text())))
            assert [(r["page"], r["n"]) for r in rows] == [(first, "-1"), ("/home", "2")]
    finally:
        assert server.stop() == 0
