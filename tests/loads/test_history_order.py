"""The batch history keeps a table's loads in order: an old export never undoes a newer load."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.loads.history import LoadHistory

BASE = "https://exports.example/t/"


def ended(history: LoadHistory, url: str, kind: str, status: str) -> int:
    job, _ = history.record("cs", "t", kind, url, 3600)
    history.finish([job.id], None, status, reason="server_error" if status == "failed" else None)
    return job.id


@pytest.mark.parametrize(
    ("old_kind", "new_kind"), [("full", "incremental"), ("incremental", "full")]
)
def test_a_redelivered_old_export_does_not_undo_a_newer_load(
    tmp_path: Path, old_kind: str, new_kind: str
) -> None:
    history = LoadHistory(tmp_path / "loads.db")
    old = ended(history, BASE + "old.csv?sig=1", old_kind, "failed")
    newer = ended(history, BASE + "new.csv", new_kind, "loaded")
    again, duplicate = history.record("cs", "t", old_kind, BASE + "old.csv?sig=2", 3600)
    assert duplicate and again.id == old
    assert (again.status, again.reason) == ("skipped", "superseded")
    assert f"job {newer}" in (again.error or "")
    with pytest.raises(ValueError, match=f"older than job {newer}"):
        history.retry(old)


def test_an_old_failed_export_still_reruns_when_nothing_newer_loaded(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "loads.db")
    old = ended(history, BASE + "old.csv?sig=1", "full", "failed")
    ended(history, BASE + "inc.csv", "incremental", "failed")  # later, but not loaded
    other, _ = history.record("cs", "u", "full", BASE + "u.csv", 3600)
    history.finish([other.id], None, "loaded")  # loaded, but another table
    again, _ = history.record("cs", "t", "full", BASE + "old.csv?sig=2", 3600)
    assert again.id == old and again.status == "pending"
