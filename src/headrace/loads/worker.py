"""The load worker: runs the jobs of one ``bulk_export`` source inside ``headrace serve``.

Three threads per source, in the delivery process (``start_load_workers``):

- the fetcher takes the oldest due ``pending`` job (or a ``fetching`` one whose lease ran out),
  downloads it with the hostile-URL ``Fetcher`` into ``<data>/loads/staged/<source>/<job>/``
  and records its size and SHA-256 (``staged``);
- the loader plans batches per table from the jobs not yet finished, in arrival order: a full
  export is loaded alone (replace); consecutive staged incremental files are loaded together
  once there are ``batch.max_files`` of them, ``batch.max_bytes``, the oldest has waited
  ``batch.max_age`` (a timer: no trigger file), or a full export waits behind them. A table's
  jobs never overtake one another, so an older full export cannot wipe newer increments. The
  loader also sends due notifications and forgets staged files a day after their job ended;
- the lease keeper renews the leases of the jobs this worker holds.

Retriable failures (timeouts, 5xx, a warehouse that is down) go back with exponential backoff
until ``max_attempts``; others end the job ``failed`` (or ``expired``) with the error text.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from headrace.config.bulk import BulkExportSource
from headrace.config.models import Pipeline
from headrace.errors import LoadError, TerminalLoadError, TransientLoadError
from headrace.loads import notify
from headrace.loads.csvfile import CsvFile
from headrace.loads.fetch import Fetcher
from headrace.loads.history import Job, LoadHistory
from headrace.loads.warehouses import LoadPlan, Warehouse, build_warehouse, settle_schema
from headrace.loads.warehouses.base import Mode
from headrace.retry import RetryPolicy
from headrace.telemetry import metrics as m

log = logging.getLogger("headrace.loads")
IDLE_WAIT = 0.25
KEEP_STAGED = 24 * 3600.0
NOTIFY_GIVE_UP = 12
NOTIFY_RETRY = RetryPolicy(initial=2.0, maximum=600.0, jitter="none")
"""The waits before a failed notification is sent again."""


def staged_name(url: str) -> str:
    """A safe file name for a download, keeping the suffix that tells the compression."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "export.csv"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[-120:]
    return name or "export.csv"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class LoadRunner:
    """Runs one source's load jobs; see the module docstring."""

    def __init__(
        self,
        source_id: str,
        source: BulkExportSource,
        data_dir: Path,
        stop: threading.Event | None = None,
        warehouse: Warehouse | None = None,
        metrics: m.Registry | None = None,
    ) -> None:
        self.source_id = source_id
        self.source = source
        self.data_dir = data_dir
        self.stop = stop or threading.Event()
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.history = LoadHistory.in_data_dir(data_dir)
        self.warehouse = warehouse or build_warehouse(source.warehouse, data_dir)
        self.fetcher = Fetcher(source.fetch, self.stop)
        self.staging = data_dir / "loads" / "staged" / source_id
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.metrics = metrics or m.Registry()

    def _count(self, status: str, jobs: int, rows: int = 0, table: str = "") -> None:
        self.metrics.add(m.key("headrace_loads_total", source=self.source_id, status=status), jobs)
        if rows:
            self.metrics.add(
                m.key("headrace_load_rows_total", source=self.source_id, table=table), rows
            )

    # -- threads -------------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (
            ("fetch", self._fetch_loop),
            ("load", self._load_loop),
            ("lease", self._lease_loop),
        ):
            thread = threading.Thread(
                target=target, name=f"loads-{self.source_id}-{name}", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)
        self.warehouse.close()

    def _fetch_loop(self) -> None:
        while not self.stop.is_set():
            try:
                busy = self.fetch_next()
            except Exception:
                log.exception("loads %s: the fetcher failed; going on", self.source_id)
                busy = False
            if not busy:
                self.stop.wait(IDLE_WAIT)

    def _load_loop(self) -> None:
        last_cleanup = 0.0
        while not self.stop.is_set():
            try:
                busy = self.load_ready()
                self.send_notifications()
                if time.monotonic() - last_cleanup > 600:
                    last_cleanup = time.monotonic()
                    self.forget_staged(KEEP_STAGED)
            except Exception:
                log.exception("loads %s: the loader failed; going on", self.source_id)
                busy = False
            if not busy:
                self.stop.wait(IDLE_WAIT)

    def _lease_loop(self) -> None:
        every = max(0.2, self.source.lease / 3)
        while not self.stop.wait(every):
            with self._held_lock:
                held = sorted(self._held)
            try:
                self.history.renew(held, self.owner, self.source.lease)
            except Exception:
                log.exception("loads %s: cannot renew leases", self.source_id)

    def _hold(self, ids: list[int], held: bool) -> None:
        with self._held_lock:
            if held:
                self._held.update(ids)
            else:
                self._held.difference_update(ids)

    # -- fetching -------------------------------------------------------------------------------

    def fetch_next(self, progress: Callable[[int, int | None], None] | None = None) -> bool:
        """Download one due job; ``False`` when none was due."""
        job = self.history.claim_fetch(self.source_id, self.owner, self.source.lease)
        if job is None:
            return False
        self.fetch(job, progress)
        return True

    def fetch(self, job: Job, progress: Callable[[int, int | None], None] | None = None) -> None:
        """Download a claimed job and mark it staged (or retry later, or end it)."""
        self._hold([job.id], True)
        folder = self.staging / str(job.id)
        try:
            self._check_crashes([job])
            if job.fetch_url is None:
                raise TerminalLoadError("no_url", "the job has no URL to fetch")
            log.info("loads %s: fetching job %d (%s)", self.source_id, job.id, job.url)
            got = self.fetcher.download(
                job.fetch_url, folder / staged_name(job.fetch_url), progress
            )
            if not self.history.mark_staged(
                job.id, self.owner, got.path, got.bytes, got.sha256, got.url
            ):
                log.warning(
                    "loads %s: job %d was taken or cancelled meanwhile", self.source_id, job.id
                )
                shutil.rmtree(folder, ignore_errors=True)
        except LoadError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            self._failed([job], exc, back_to="pending")
        except Exception as exc:  # a job left fetching would block its table; text may hold URLs
            log.exception("loads %s: fetching job %d failed unexpectedly", self.source_id, job.id)
            shutil.rmtree(folder, ignore_errors=True)
            error = TransientLoadError("internal_error", type(exc).__name__)
            self._failed([job], error, back_to="pending")
        finally:
            self._hold([job.id], False)

    def stage_local(self, job: Job, path: Path) -> None:
        """Stage a local file for a claimed job (``headrace load FILE``)."""
        dest = self.staging / str(job.id) / staged_name(path.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        with open(dest, "rb") as staged:  # durable before the history says "staged"
            os.fsync(staged.fileno())
        self.history.mark_staged(
            job.id, self.owner, dest, dest.stat().st_size, file_sha256(dest), str(path)
        )

    def _failed(self, jobs: list[Job], exc: LoadError, back_to: str) -> None:
        ids = [j.id for j in jobs]
        if exc.reason == "interrupted":
            self.history.release(ids, self.owner, back_to)
            return
        attempts = max(self.history.get(i).attempts for i in ids)
        if exc.retriable and attempts < self.source.max_attempts:
            delay = RetryPolicy(self.source.retry_backoff, 24 * 3600.0, jitter="none").delay(
                attempts
            )
            log.warning(
                "loads %s: job(s) %s attempt %d failed (%s); retrying in %.0fs",
                self.source_id, ids, attempts, exc, delay,
            )  # fmt: skip
            self.history.retry_later(ids, self.owner, back_to, delay, exc.reason, str(exc))
            return
        status = exc.status if exc.status in ("failed", "expired") else "failed"
        log.error("loads %s: job(s) %s %s: %s", self.source_id, ids, status, exc)
        self._count(status, len(ids))
        self.history.finish(
            ids, self.owner, status, reason=exc.reason, error=str(exc),
            notify=self._announces(status),
        )  # fmt: skip

    def _check_crashes(self, jobs: list[Job]) -> None:
        """Fail jobs claimed more than ``max_attempts`` times: each claim counts an attempt and
        a failure that returns ends the job by then, so the extra claims were of attempts whose
        worker died (killed for memory, say); taking them up again would crash forever."""
        attempts = max(j.attempts for j in jobs)
        if attempts > self.source.max_attempts:
            raise TerminalLoadError(
                "crashed",
                f"taken up {attempts} times (max_attempts is {self.source.max_attempts}): "
                "attempts ended without an answer, the worker process probably died",
            )

    def _announces(self, status: str) -> bool:
        return self.source.notify is not None and status in self.source.notify.on

    # -- loading --------------------------------------------------------------------------------

    def plan(self, now: float | None = None) -> list[list[Job]]:
        """Batches ready to load now (see the module docstring)."""
        now = time.time() if now is None else now
        tables: dict[str, list[Job]] = {}
        for job in self.history.active(self.source_id):
            tables.setdefault(job.table_name, []).append(job)
        batches: list[list[Job]] = []
        settings = self.source.batch
        for jobs in tables.values():
            loading = [j for j in jobs if j.status == "loading"]
            if loading:  # a batch is in hand, or its worker died: take it up again, whole
                if all((j.lease_until or 0) < now for j in loading):
                    key = loading[0].batch_key
                    batches.append([j for j in loading if j.batch_key == key])
                continue
            run: list[Job] = []
            for job in jobs:
                if job.status != "staged":
                    break
                run.append(job)
            if not run or run[0].next_attempt_at > now:
                continue
            if run[0].kind == "full":
                batches.append([run[0]])
                continue
            prior = run[0].batch_key
            if prior is not None:  # tried before: the same files again, so the key is kept
                again: list[Job] = []
                for job in run:
                    if job.batch_key != prior:
                        break
                    again.append(job)
                batches.append(again)
                continue
            batch: list[Job] = []
            size = 0
            for job in run:
                if job.kind != "incremental" or job.next_attempt_at > now:
                    break
                if batch and (
                    len(batch) >= settings.max_files or size + (job.bytes or 0) > settings.max_bytes
                ):
                    break
                batch.append(job)
                size += job.bytes or 0
            oldest = min(j.staged_at or now for j in batch)
            follows = jobs[len(batch)] if len(jobs) > len(batch) else None
            if (
                len(batch) >= settings.max_files
                or size >= settings.max_bytes
                or now - oldest >= settings.max_age
                or (follows is not None and follows.kind == "full")
                or (follows is not None and follows.status == "staged")
            ):
                batches.append(batch)
        return batches

    def load_ready(self, progress: Callable[[int], None] | None = None) -> bool:
        """Load every batch that is ready; ``False`` when none was."""
        batches = self.plan()
        for batch in batches:
            if self.stop.is_set():
                break
            self.load(batch, progress)
        return bool(batches)

    def load(self, jobs: list[Job], progress: Callable[[int], None] | None = None) -> None:
        """Claim ``jobs`` as one batch and load them into the warehouse."""
        key = self.history.claim_batch(jobs, self.owner, self.source.lease)
        if key is None:
            return
        ids = [j.id for j in jobs]
        self._hold(ids, True)
        table = jobs[0].table_name
        try:
            self._check_crashes([self.history.get(i) for i in ids])
            files = [self._verified(j) for j in jobs]
            mode: Mode = "replace" if jobs[0].kind == "full" else self.source.incremental
            schema = settle_schema(self.source, self.warehouse, table, mode, files)
            plan = LoadPlan(table, mode, files, schema, key, self.source.empty_as_null)
            log.info(
                "loads %s: loading %d file(s) into %s (%s)", self.source_id, len(files), table, mode
            )
            result = self.warehouse.load(plan, progress, self.stop)
            rows = (
                {}
                if result.already_loaded
                else {
                    j.id: r
                    for j, r in zip(jobs, result.rows_per_file, strict=True)
                    if r is not None
                }
            )
            self.history.finish(
                ids, self.owner, "loaded", rows=rows, notify=self._announces("loaded")
            )
            self._count("loaded", len(ids), result.rows, table)
            in_table = (
                "" if result.rows_in_table is None else f"; the table has {result.rows_in_table}"
            )
            log.info(
                "loads %s: %s loaded (%d rows%s)", self.source_id, table, result.rows, in_table
            )
        except LoadError as exc:
            if exc.reason == "checksum_mismatch":
                for job in jobs:
                    shutil.rmtree(self.staging / str(job.id), ignore_errors=True)
                self._failed(jobs, exc, back_to="pending")
            else:
                self._failed(jobs, exc, back_to="staged")
        except Exception as exc:
            log.exception("loads %s: loading %s failed unexpectedly", self.source_id, table)
            self._failed(jobs, TransientLoadError("internal_error", str(exc)), "staged")
        finally:
            self._hold(ids, False)

    def _verified(self, job: Job) -> CsvFile:
        path = Path(job.staged_path or "")
        if not job.staged_path or not path.exists():
            raise TransientLoadError(
                "checksum_mismatch", f"job {job.id}: the staged file is missing"
            )
        if job.checksum and file_sha256(path) != job.checksum:
            raise TransientLoadError(
                "checksum_mismatch",
                f"job {job.id}: the staged file changed on disk",
            )
        fetch = self.source.fetch
        return CsvFile.open(path, fetch.max_decompressed_bytes, fetch.max_compression_ratio)

    # -- upkeep ---------------------------------------------------------------------------------

    def send_notifications(self) -> None:
        settings = self.source.notify
        if settings is None:
            return
        for job in self.history.due_notifications(self.source_id):
            problem = notify.send(settings, job)
            if problem is None:
                self.history.notified(job.id, ok=True)
                continue
            give_up = job.notify_attempts + 1 >= NOTIFY_GIVE_UP
            log.warning(
                "loads %s: notification of job %d failed: %s", self.source_id, job.id, problem
            )
            self.history.notified(
                job.id,
                ok=False,
                retry_in=NOTIFY_RETRY.delay(job.notify_attempts + 1),
                give_up=give_up,
            )

    def forget_staged(self, older_than: float) -> None:
        """Remove staged files of jobs that ended more than ``older_than`` seconds ago."""
        cutoff = time.time() - older_than
        for job in self.history.find(source=self.source_id, limit=1000):
            if job.finished_at and job.finished_at < cutoff and job.staged_path:
                shutil.rmtree(self.staging / str(job.id), ignore_errors=True)
                self.history.forget_staged(job.id)


def start_load_workers(
    pipeline: Pipeline, data_dir: Path, stop: threading.Event, metrics: m.Registry | None = None
) -> list[LoadRunner]:
    """Start a runner for every ``bulk_export`` source (called by the delivery process)."""
    runners = []
    for source_id, source in pipeline.bulk_sources().items():
        runner = LoadRunner(source_id, source, data_dir, stop, metrics=metrics)
        runner.start()
        runners.append(runner)
    return runners
