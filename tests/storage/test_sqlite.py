"""Opening a new database from many connections at once never fails with "database is locked"
(SQLite refuses a second switch to WAL at once, without waiting, while another is under way)."""

from __future__ import annotations

import threading
from pathlib import Path

from headrace.storage.sqlite import open_database


def test_connections_opening_a_new_database_together_all_get_in(tmp_path: Path) -> None:
    failures: list[str] = []
    for round_ in range(100):  # without the lock about one round in ten fails
        path = tmp_path / f"state-{round_}.db"
        start = threading.Barrier(3)

        def open_and_create(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                conn = open_database(path)
                conn.executescript("CREATE TABLE IF NOT EXISTS t (n INTEGER);")
                conn.close()
            except Exception as exc:
                failures.append(f"{path.name}: {exc!r}")

        threads = [threading.Thread(target=open_and_create) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert open_database(tmp_path / "state-0.db").execute("PRAGMA journal_mode").fetchone() == (
        "wal",
    )
