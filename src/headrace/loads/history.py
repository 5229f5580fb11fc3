"""The batch history: every load job in ``<data>/loads.db`` (SQLite, WAL, synchronous=FULL).

One row per job (one export file)::

    pending ──► fetching ──► staged ──► loading ──► loaded
       ▲  │         │           │  ▲       │
       │  └─────────┴───────────┴──┴───────┴──► failed | expired | skipped

``fetching`` and ``loading`` are held under a lease (``lease_owner``, ``lease_until``) that the
worker renews while it works. A job whose lease ran out (its worker died) is taken again by
the next worker that looks: nothing stays locked. Jobs loaded together share a ``batch_key``;
the warehouse records that key in the same transaction as the rows, so a batch whose worker
died between the warehouse commit and the history update is not loaded twice.

``url`` is shown to people with query-string values redacted; ``fetch_url`` (as sent, with its
signature) is kept only until the job is loaded or cancelled, because a retry needs it.
The ingest workers insert jobs (``record``) from several processes; every write is one short
``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from headrace.loads.fetch import is_signing_param, redact_url
from headrace.storage.sqlite import open_database

CLI_SOURCE = "cli"  # jobs of `headrace load`, which runs them itself
ACTIVE = ("pending", "fetching", "staged", "loading")
TERMINAL = ("loaded", "failed", "expired", "skipped")
STATUSES = ACTIVE + TERMINAL

SCHEMA = """
CREATE TABLE IF NOT EXISTS loads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    table_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    fetch_url TEXT,
    dedupe_key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    reason TEXT,
    rows INTEGER,
    bytes INTEGER,
    files INTEGER NOT NULL DEFAULT 1,
    staged_path TEXT,
    checksum TEXT,
    batch_key TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    fetch_started_at REAL,
    staged_at REAL,
    load_started_at REAL,
    finished_at REAL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    notify_pending INTEGER NOT NULL DEFAULT 0,
    notify_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS loads_dedupe ON loads (dedupe_key, id);
CREATE INDEX IF NOT EXISTS loads_active ON loads (source, status, id);
CREATE INDEX IF NOT EXISTS loads_batch ON loads (batch_key) WHERE batch_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS loads_notify ON loads (notify_pending) WHERE notify_pending = 1;
"""

_SHOWN = ("id", "source", "table_name", "kind", "status", "url", "files", "bytes", "rows",
          "attempts", "reason", "error", "checksum", "batch_key", "created_at", "updated_at",
          "fetch_started_at", "staged_at", "load_started_at", "finished_at")  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One load job as the history holds it."""

    id: int
    source: str
    table_name: str
    kind: str  # full | incremental
    status: str
    url: str
    fetch_url: str | None
    files: int
    bytes: int | None
    rows: int | None
    attempts: int
    reason: str | None
    error: str | None
    staged_path: str | None
    checksum: str | None
    batch_key: str | None
    created_at: float
    updated_at: float
    fetch_started_at: float | None
    staged_at: float | None
    load_started_at: float | None
    finished_at: float | None
    next_attempt_at: float
    lease_owner: str | None
    lease_until: float | None
    notify_pending: int
    notify_attempts: int

    def public(self) -> dict[str, Any]:
        """What operators see (no signed URL, no lease internals)."""
        data = asdict(self)
        shown = {k: data[k] for k in _SHOWN}
        shown["table"] = shown.pop("table_name")
        return shown


_COLUMNS = ", ".join(Job.__dataclass_fields__)


class _Taken(Exception):
    """A job changed between planning and claiming (another worker, an operator)."""


def dedupe_key(source: str, table: str, kind: str, url: str) -> str:
    """Same source, table, kind and file → same key. The file is the URL without its signing
    and expiry parameters (a re-signed URL names the same export) and with the others sorted
    (``?id=1`` and ``?id=2`` are two exports)."""
    parts = urlsplit(url)
    file = f"{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2].lower()}{parts.path}"
    named = sorted(
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_signing_param(k)
    )
    if named:  # a URL without such parameters keeps the key it had before they counted
        file += "?" + urlencode(named)
    return hashlib.sha256(f"{source}\0{table}\0{kind}\0{file}".encode()).hexdigest()


class LoadHistory:
    """The ``loads`` table; safe to use from several threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = open_database(path)
        self.conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self.conn.executescript(SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> LoadHistory:
        return cls(data_dir / "loads.db")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # one connection serves the runner's threads (and an ingest worker's request threads):
        # the lock keeps their transactions apart; other processes wait on SQLite's own lock
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _jobs(self, where: str, params: Sequence[Any] = ()) -> list[Job]:
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM loads WHERE {where}", params
            ).fetchall()
        return [Job(**dict(row)) for row in rows]

    # -- intake ------------------------------------------------------------------------------

    def record(
        self, source: str, table: str, kind: str, url: str, dedupe_window: float
    ) -> tuple[Job, bool]:
        """Record a job (durably, before the webhook is answered); ``(job, True)`` when the same
        export is already known. A known one that failed or expired is taken up again with the
        URL just received (a sender's redelivery usually carries a freshly signed one)."""
        now = time.time()
        key = dedupe_key(source, table, kind, url)
        with self._write() as conn:
            found = self._jobs(
                "dedupe_key = ? AND created_at >= ? ORDER BY id DESC LIMIT 1",
                (key, now - dedupe_window),
            )
            if found and found[0].status in ("failed", "expired"):
                newer = self._superseded_by(found[0])
                if newer is not None:
                    conn.execute(
                        "UPDATE loads SET status = 'skipped', reason = 'superseded', error = ?, "
                        "fetch_url = NULL, updated_at = ?, finished_at = ? WHERE id = ?",
                        (f"job {newer} of the same table loaded since", now, now, found[0].id),
                    )
                    return self._jobs("id = ?", (found[0].id,))[0], True
                conn.execute(
                    "UPDATE loads SET status = CASE WHEN staged_path IS NOT NULL AND status = "
                    "'failed' AND reason NOT IN ('url_expired') THEN 'staged' ELSE 'pending' END, "
                    "fetch_url = ?, url = ?, attempts = 0, error = NULL, reason = NULL, "
                    "next_attempt_at = 0, updated_at = ?, finished_at = NULL WHERE id = ?",
                    (url, redact_url(url), now, found[0].id),
                )
                return self._jobs("id = ?", (found[0].id,))[0], True
            if found and found[0].status != "skipped":
                return found[0], True
            cursor = conn.execute(
                "INSERT INTO loads (source, table_name, kind, url, fetch_url, dedupe_key, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (source, table, kind, redact_url(url), url, key, now, now),
            )
            job_id = cursor.lastrowid
        return self.get(int(job_id or 0)), False

    def _superseded_by(self, job: Job) -> int | None:
        """A later job of the same table already loaded that running ``job`` now would undo:
        a full export replaces the table (wiping the later rows), and an increment on top of a
        later full export would bring back old rows. A re-armed job keeps its id, and so its
        place ahead of the later ones."""
        row = self.conn.execute(
            "SELECT id FROM loads WHERE source = ? AND table_name = ? AND id > ? AND "
            "status = 'loaded' AND (? = 'full' OR kind = 'full') ORDER BY id DESC LIMIT 1",
            (job.source, job.table_name, job.id, job.kind),
        ).fetchone()
        return None if row is None else int(row[0])

    def record_skipped(self, source: str, table: str, kind: str, url: str, why: str) -> Job:
        """A job that will not run (a table not allowed), kept so operators can see it."""
        now = time.time()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO loads (source, table_name, kind, url, dedupe_key, status, reason,"
                " error, created_at, updated_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, 'skipped', 'table_not_allowed', ?, ?, ?, ?)",
                (source, table, kind, redact_url(url), dedupe_key(source, table, kind, url),
                 why, now, now, now),
            )  # fmt: skip
            job_id = cursor.lastrowid
        return self.get(int(job_id or 0))

    # -- the worker's side -------------------------------------------------------------------

    def claim_fetch(self, source: str, owner: str, lease: float) -> Job | None:
        """Take the oldest job due for download (or one whose fetcher's lease ran out)."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM loads WHERE source = ? AND ((status = 'pending' AND "
                "next_attempt_at <= ?) OR (status = 'fetching' AND lease_until < ?)) "
                "ORDER BY id LIMIT 1",
                (source, now, now),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE loads SET status = 'fetching', lease_owner = ?, lease_until = ?, "
                "attempts = attempts + 1, fetch_started_at = ?, updated_at = ? WHERE id = ?",
                (owner, now + lease, now, now, row["id"]),
            )
        return self.get(int(row["id"]))

    def renew(self, ids: Sequence[int], owner: str, lease: float) -> None:
        """Extend the lease of jobs ``owner`` still holds."""
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self._write() as conn:
            conn.execute(
                f"UPDATE loads SET lease_until = ? WHERE lease_owner = ? AND id IN ({marks}) "
                "AND status IN ('fetching', 'loading')",
                (time.time() + lease, owner, *ids),
            )

    def mark_staged(
        self, job_id: int, owner: str, path: Path, size: int, checksum: str, url: str
    ) -> bool:
        """The file is on disk with its checksum; ``False`` if the job was taken from us."""
        now = time.time()
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE loads SET status = 'staged', staged_path = ?, bytes = ?, checksum = ?, "
                "url = ?, staged_at = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL, "
                # downloading and loading each get max_attempts: loading counts from zero
                "error = NULL, reason = NULL, attempts = 0 "
                "WHERE id = ? AND status = 'fetching' AND lease_owner = ?",
                (str(path), size, checksum, url, now, now, job_id, owner),
            )
        return cursor.rowcount == 1

    def active(self, source: str) -> list[Job]:
        """Jobs of ``source`` not yet finished, oldest first (what the batcher plans from)."""
        marks = ",".join("?" * len(ACTIVE))
        return self._jobs(f"source = ? AND status IN ({marks}) ORDER BY id", (source, *ACTIVE))

    def claim_batch(self, jobs: Sequence[Job], owner: str, lease: float) -> str | None:
        """Mark ``jobs`` as one load; returns its batch key, or ``None`` if any was taken or
        changed meanwhile. A batch whose worker died keeps its key (see the module docstring).
        Every claim counts an attempt, a resumed one too: a batch that kills its worker (out of
        memory) must not be taken up forever."""
        now = time.time()
        try:
            with self._write() as conn:
                key = self._batch_key(conn, [j.id for j in jobs])
                for job in jobs:
                    cursor = conn.execute(
                        "UPDATE loads SET status = 'loading', batch_key = ?, lease_owner = ?, "
                        "lease_until = ?, load_started_at = ?, updated_at = ?, files = ?, "
                        "attempts = attempts + 1 "
                        "WHERE id = ? AND "
                        "((status = 'staged' AND next_attempt_at <= ?) OR "
                        "(status = 'loading' AND lease_until < ?))",
                        (key, owner, now + lease, now, now, len(jobs), job.id, now, now),
                    )
                    if cursor.rowcount != 1:
                        raise _Taken
        except _Taken:
            return None
        return key

    def _batch_key(self, conn: sqlite3.Connection, ids: list[int]) -> str:
        """The key of the batch of exactly these jobs, kept from an earlier attempt if they had
        one: after a lost commit answer the warehouse may hold that key already, and only the
        same key lets it tell that the rows are in (a fresh one would load them twice)."""
        marks = ",".join("?" * len(ids))
        keys = {
            row[0]
            for row in conn.execute(f"SELECT batch_key FROM loads WHERE id IN ({marks})", ids)
        }
        if len(keys) == 1 and (key := keys.pop()) is not None:
            holders = {
                row[0] for row in conn.execute("SELECT id FROM loads WHERE batch_key = ?", (key,))
            }
            if holders == set(ids):
                return str(key)
        return uuid.uuid4().hex

    def finish(
        self,
        ids: Sequence[int],
        owner: str | None,
        status: str,
        *,
        rows: dict[int, int] | None = None,
        reason: str | None = None,
        error: str | None = None,
        notify: bool = False,
    ) -> None:
        """End jobs: ``loaded`` (with rows per job) or ``failed`` / ``expired`` / ``skipped``."""
        now = time.time()
        with self._write() as conn:
            for job_id in ids:
                conn.execute(
                    "UPDATE loads SET status = ?, rows = COALESCE(?, rows), reason = ?, "
                    "error = ?, finished_at = ?, updated_at = ?, lease_owner = NULL, "
                    "lease_until = NULL, notify_pending = ?, fetch_url = CASE WHEN ? = 'loaded' "
                    "THEN NULL ELSE fetch_url END WHERE id = ? AND (? IS NULL OR lease_owner = ?)",
                    ((status, (rows or {}).get(job_id), reason, error, now, now, int(notify),
                      status, job_id, owner, owner)),
                )  # fmt: skip

    def retry_later(
        self, ids: Sequence[int], owner: str, back_to: str, delay: float, reason: str, error: str
    ) -> None:
        """Put jobs back (``pending`` or ``staged``) to be tried again after ``delay`` seconds."""
        now = time.time()
        with self._write() as conn:
            for job_id in ids:
                conn.execute(
                    "UPDATE loads SET status = ?, next_attempt_at = ?, reason = ?, error = ?, "
                    "updated_at = ?, lease_owner = NULL, lease_until = NULL "
                    "WHERE id = ? AND lease_owner = ?",
                    (back_to, now + delay, reason, error, now, job_id, owner),
                )

    def release(self, ids: Sequence[int], owner: str, back_to: str) -> None:
        """Give jobs back unchanged (the worker is stopping); the attempt their claim counted
        does not count."""
        with self._write() as conn:
            for job_id in ids:
                conn.execute(
                    "UPDATE loads SET status = ?, attempts = MAX(attempts - 1, 0), "
                    "lease_owner = NULL, lease_until = NULL, updated_at = ? "
                    "WHERE id = ? AND lease_owner = ?",
                    (back_to, time.time(), job_id, owner),
                )

    def claim(self, job_id: int, owner: str, lease: float) -> Job:
        """Take one pending job by id (``headrace load`` runs its own job)."""
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE loads SET status = 'fetching', lease_owner = ?, lease_until = ?, "
                "attempts = attempts + 1, fetch_started_at = ?, updated_at = ? "
                "WHERE id = ? AND status = 'pending'",
                (owner, now + lease, now, now, job_id),
            )
        return self.get(job_id)

    def forget_staged(self, job_id: int) -> None:
        """The staged file of a finished job is gone."""
        with self._write() as conn:
            conn.execute("UPDATE loads SET staged_path = NULL WHERE id = ?", (job_id,))

    def due_notifications(self, source: str) -> list[Job]:
        return self._jobs(
            "notify_pending = 1 AND source = ? AND next_attempt_at <= ? ORDER BY id LIMIT 50",
            (source, time.time()),
        )

    def notified(self, job_id: int, ok: bool, retry_in: float = 0.0, give_up: bool = False) -> None:
        with self._write() as conn:
            if ok or give_up:
                conn.execute("UPDATE loads SET notify_pending = 0 WHERE id = ?", (job_id,))
            else:
                conn.execute(
                    "UPDATE loads SET notify_attempts = notify_attempts + 1, "
                    "next_attempt_at = ? WHERE id = ?",
                    (time.time() + retry_in, job_id),
                )

    # -- operators -----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        found = self._jobs("id = ?", (job_id,))
        if not found:
            raise KeyError(job_id)
        return found[0]

    def find(
        self,
        *,
        status: str | None = None,
        table: str | None = None,
        source: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Jobs newest first, filtered."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        for column, value in (("status", status), ("table_name", table), ("source", source)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        return self._jobs(f"{' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*params, limit))

    def retry(self, job_id: int) -> Job:
        """Run a finished job again: from its staged file if it has one, else by downloading.
        ``ValueError`` says why it cannot be retried."""
        job = self.get(job_id)
        if job.status in ACTIVE:
            raise ValueError(f"job {job_id} is {job.status}: it is already going to run")
        if job.source == CLI_SOURCE:
            raise ValueError(f"job {job_id} was loaded by hand: run `headrace load` again")
        newer = self._superseded_by(job)
        if newer is not None:
            raise ValueError(
                f"job {job_id} is older than job {newer}, which loaded {job.table_name} since: "
                "running it now would undo that load"
            )
        staged = job.staged_path is not None and Path(job.staged_path).exists()
        if not staged and job.fetch_url is None:
            raise ValueError(
                f"job {job_id} has no staged file and no URL to fetch (loaded jobs forget it)"
            )
        back_to = "staged" if staged else "pending"
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE loads SET status = ?, attempts = 0, error = NULL, reason = NULL, "
                "next_attempt_at = 0, finished_at = NULL, updated_at = ?, notify_pending = 0, "
                # a loaded job is loaded again on purpose: a fresh key. A failed one keeps its
                # key: its last commit may have reached the warehouse with the answer lost
                "batch_key = CASE WHEN status = 'loaded' THEN NULL ELSE batch_key END "
                "WHERE id = ?",
                (back_to, now, job_id),
            )
        return self.get(job_id)

    def cancel(self, job_id: int) -> Job:
        """Stop a job that has not started loading; ``ValueError`` if it cannot be stopped."""
        job = self.get(job_id)
        if job.status == "loading":
            raise ValueError(f"job {job_id} is being loaded now and cannot be cancelled")
        if job.status in TERMINAL:
            raise ValueError(f"job {job_id} is already {job.status}")
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE loads SET status = 'skipped', reason = 'cancelled', "
                "error = 'cancelled by an operator', fetch_url = NULL, finished_at = ?, "
                "updated_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? "
                "AND status != 'loading'",
                (now, now, job_id),
            )
        return self.get(job_id)
