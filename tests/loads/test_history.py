"""The batch history: intake, dedupe, leases that expire, operator actions."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from headrace.loads.history import LoadHistory

URL = "https://exports.example/t/signatures_full_1.csv?X-Amz-Signature=secret&X-Amz-Expires=3600"


def test_record_redacts_and_dedupes(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "loads.db")
    job, duplicate = history.record("cs", "signatures", "full", URL, 3600)
    assert not duplicate and job.status == "pending"
    assert "secret" not in job.url and "X-Amz-Signature=REDACTED" in job.url
    assert job.fetch_url == URL
    # the same file, re-signed: the same export
    again, duplicate = history.record(
        "cs", "signatures", "full", URL.replace("secret", "other"), 3600
    )
    assert duplicate and again.id == job.id
    # another table, kind or file is another job
    assert not history.record("cs", "members", "full", URL, 3600)[1]
    assert not history.record("cs", "signatures", "incremental", URL, 3600)[1]
    assert not history.record("cs", "signatures", "full", URL.replace("_1.csv", "_2.csv"), 3600)[1]
    # outside the window, the same path is a new export
    assert not history.record("cs", "signatures", "full", URL, 0)[1]
    public = job.public()
    assert "fetch_url" not in public and "lease_owner" not in public


def test_query_parameters_other_than_the_signature_name_the_export(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "loads.db")
    first, _ = history.record("cs", "t", "full", "https://h/export?id=1&sig=a", 3600)
    second, duplicate = history.record("cs", "t", "full", "https://h/export?id=2&sig=b", 3600)
    assert not duplicate and second.id != first.id
    # re-signed, parameters in another order: the same export
    for url in ("https://h/export?sig=c&id=1", "https://h/export?id=1&Signature=z&Expires=9",
                "https://h/export?X-Goog-Date=20240101T000000Z&id=1&X-Goog-Signature=q"):  # fmt: skip
        again, duplicate = history.record("cs", "t", "full", url, 3600)
        assert duplicate and again.id == first.id, url
    assert not history.record("cs", "t", "full", "https://h/export?id=1&part=2", 3600)[1]
    assert not history.record("cs", "t", "full", "https://h/export?sig=a", 3600)[1]


def test_a_failed_export_delivered_again_runs_again_with_the_new_url(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "loads.db")
    job, _ = history.record("cs", "t", "full", URL, 3600)
    claimed = history.claim_fetch("cs", "w1", 60)
    assert claimed is not None
    history.finish([job.id], "w1", "expired", reason="url_expired", error="403")
    fresh = URL.replace("secret", "fresh")
    again, duplicate = history.record("cs", "t", "full", fresh, 3600)
    assert duplicate and again.id == job.id
    assert again.status == "pending" and again.fetch_url == fresh and again.attempts == 0


def test_leases_expire_so_nothing_stays_locked(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "loads.db")
    job, _ = history.record("cs", "t", "full", URL, 3600)
    assert history.claim_fetch("cs", "dead-worker", 0.2) is not None
    assert history.claim_fetch("cs", "w2", 60) is None  # held
    time.sleep(0.3)
    taken = history.claim_fetch("cs", "w2", 60)
    assert taken is not None and taken.id == job.id and taken.lease_owner == "w2"
    assert taken.attempts == 2
    # the dead worker coming back cannot overwrite the job
    assert not history.mark_staged(job.id, "dead-worker", tmp_path / "x", 1, "c", "u")
    assert history.mark_staged(job.id, "w2", tmp_path / "x", 1, "c", "u")
    staged = history.get(job.id)
    assert staged.status == "staged" and staged.lease_owner is None
    key = history.claim_batch([staged], "w2", 0.2)
    assert key is not None
    assert history.claim_batch([history.get(job.id)], "w3", 60) is None  # held
    time.sleep(0.3)
    assert history.claim_batch([history.get(job.id)], "w3", 60) == key  # same batch key
    history.renew([job.id], "w3", 60)
    assert (history.get(job.id).lease_until or 0) > time.time() + 50


def test_retry_and_cancel(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "loads.db")
    job, _ = history.record("cs", "t", "incremental", URL, 3600)
    with pytest.raises(ValueError, match="already going to run"):
        history.retry(job.id)
    assert history.cancel(job.id).status == "skipped"
    with pytest.raises(ValueError, match="already skipped"):
        history.cancel(job.id)
    other, _ = history.record("cs", "u", "incremental", URL, 3600)
    history.claim_fetch("cs", "w", 60)
    staged = tmp_path / "f.csv"
    staged.write_text("id\n1\n")
    history.mark_staged(other.id, "w", staged, 5, "c", "u")
    history.claim_batch([history.get(other.id)], "w", 60)
    with pytest.raises(ValueError, match="being loaded"):
        history.cancel(other.id)
    history.finish([other.id], "w", "failed", reason="rejected_by_warehouse", error="bad")
    assert history.retry(other.id).status == "staged"  # its file is still staged
    staged.unlink()
    history.finish([other.id], None, "failed", error="bad")
    assert history.retry(other.id).status == "pending"  # downloaded again
    assert [j.id for j in history.find(table="u")] == [other.id]
    assert [j.id for j in history.find(status="skipped")] == [job.id]


def test_the_history_survives_reopening_and_is_fsynced(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "loads.db")
    job, _ = history.record("cs", "t", "full", URL, 3600)
    history.close()
    conn = sqlite3.connect(tmp_path / "loads.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert LoadHistory(tmp_path / "loads.db").get(job.id).status == "pending"
