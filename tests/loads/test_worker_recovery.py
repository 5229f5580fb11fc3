"""The load runner when things go wrong: workers that die, answers that are lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from headrace.config.bulk import BulkExportSource
from headrace.errors import TransientLoadError
from headrace.loads.history import Job
from headrace.loads.warehouses import LoadPlan
from headrace.loads.warehouses.base import LoadResult, Progress
from headrace.loads.warehouses.duckdb import DuckDBLoader
from headrace.loads.worker import LoadRunner
from support.exportserver import csv_rows, write


def duck_source(**settings: Any) -> BulkExportSource:
    return BulkExportSource.model_validate(
        {
            "type": "bulk_export",
            "path": "/webhooks/cs",
            "warehouse": {"type": "duckdb", "path": "w.duckdb"},
            "fetch": {"allow_networks": ["127.0.0.2/32"], "backoff": 0.01, "attempts": 1},
            "batch": {"max_age": 0},
            "retry_backoff": 0,
            **settings,
        }
    )


def staged_job(runner: LoadRunner, tmp_path: Path, name: str, kind: str = "full") -> Job:
    job, _ = runner.history.record("cs", "t", kind, f"http://x.example/{name}", 3600)
    runner.history.claim(job.id, runner.owner, 60)
    runner.stage_local(runner.history.get(job.id), write(tmp_path / name, csv_rows(10)))
    return runner.history.get(job.id)


def test_a_batch_that_kills_its_worker_fails_as_crashed(data_dir: Path, tmp_path: Path) -> None:
    runner = LoadRunner("cs", duck_source(lease=0.05, max_attempts=2), data_dir)
    history = runner.history
    job = staged_job(runner, tmp_path, "a.csv")
    assert job.attempts == 0  # loading counts its own attempts
    for attempt in (1, 2):  # two workers take the batch up and die without an answer
        assert history.claim_batch([history.get(job.id)], f"dead-{attempt}", 0.05) is not None
        assert history.get(job.id).attempts == attempt
        time.sleep(0.1)
    assert runner.load_ready()
    ended = history.get(job.id)
    assert (ended.status, ended.reason, ended.attempts) == ("failed", "crashed", 3)
    assert "taken up 3 times" in (ended.error or "")
    runner.warehouse.close()


def test_a_download_that_kills_its_worker_fails_as_crashed(data_dir: Path) -> None:
    runner = LoadRunner("cs", duck_source(lease=0.05, max_attempts=2), data_dir)
    history = runner.history
    job, _ = history.record("cs", "t", "full", "http://x.example/a.csv", 3600)
    for _dead in range(2):
        assert history.claim_fetch("cs", "dead", 0.05) is not None
        time.sleep(0.1)
    assert runner.fetch_next()
    ended = history.get(job.id)
    assert (ended.status, ended.reason) == ("failed", "crashed")
    runner.warehouse.close()


class LostAnswer(DuckDBLoader):
    """Commits the first load, then reports it lost (a connection cut after COMMIT was sent)."""

    lost = 0

    def load(self, plan: LoadPlan, progress: Progress | None, stop: threading.Event) -> LoadResult:
        result = super().load(plan, progress, stop)
        if not self.lost:
            self.lost += 1
            raise TransientLoadError("warehouse_unavailable", "connection lost")
        return result


def duck_rows(data_dir: Path, table: str) -> list[tuple[Any, ...]]:
    import duckdb

    with duckdb.connect(str(data_dir / "w.duckdb"), read_only=True) as conn:
        return conn.execute(f"SELECT 1 FROM {table}").fetchall()


def test_a_batch_whose_commit_answer_was_lost_is_not_loaded_twice(
    data_dir: Path, tmp_path: Path
) -> None:
    settings = duck_source()
    runner = LoadRunner(
        "cs", settings, data_dir, warehouse=LostAnswer(settings.warehouse, data_dir)
    )
    history = runner.history
    first = staged_job(runner, tmp_path, "a.csv", "incremental")
    job, _ = history.record("cs", "t", "incremental", "http://x.example/b.csv", 3600)
    history.claim(job.id, runner.owner, 60)
    runner.stage_local(history.get(job.id), write(tmp_path / "b.csv", csv_rows(10, 10)))
    assert runner.load_ready()
    back = [history.get(first.id), history.get(job.id)]
    assert [j.status for j in back] == ["staged", "staged"]  # retriable: tried again
    key = back[0].batch_key
    assert key is not None and back[1].batch_key == key
    later = staged_job(runner, tmp_path, "c.csv", "incremental")  # arrives meanwhile
    assert [[j.id for j in batch] for batch in runner.plan()] == [[first.id, job.id]]
    assert runner.load_ready()
    assert history.get(first.id).batch_key == key  # the same key: the warehouse knows it
    assert [history.get(i).status for i in (first.id, job.id)] == ["loaded", "loaded"]
    assert len(duck_rows(data_dir, "t")) == 20  # not 40
    assert len(duck_rows(data_dir, "_headrace_loads")) == 1
    runner.load_ready()
    assert history.get(later.id).status == "loaded"
    assert len(duck_rows(data_dir, "t")) == 30
    runner.warehouse.close()


def test_an_unexpected_fetch_error_never_leaves_the_job_fetching(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = LoadRunner("cs", duck_source(max_attempts=2), data_dir)
    history = runner.history

    def broken(*_args: object) -> None:
        raise RuntimeError("http://x.example/a.csv?sig=s3cret")

    monkeypatch.setattr(runner.fetcher, "download", broken)
    job, _ = history.record("cs", "t", "full", "http://x.example/a.csv?sig=s3cret", 3600)
    assert runner.fetch_next()
    assert history.get(job.id).status == "pending"  # retried, not left fetching
    assert runner.fetch_next()
    ended = history.get(job.id)
    assert (ended.status, ended.reason, ended.error) == ("failed", "internal_error", "RuntimeError")
    runner.warehouse.close()
