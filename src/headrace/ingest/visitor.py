"""Visitor ids for page-hit counts (``$visitor`` in a source's ``map``): a daily salted hash of
the client address and User-Agent, so the dashboard can count unique visitors while neither the
address nor anything that leads back to it is stored.

    visitor = hex(HMAC-SHA256(salt(day), address + "\\n" + user_agent))[:16]

``day`` is the UTC date the request was received. The salt of a day comes from one of two
places:

- ``HEADRACE_VISITOR_SECRET`` set (the same on every ingest machine, so they count alike):
  ``salt(day) = HMAC-SHA256(secret, "headrace visitor salt " + day)``. Whoever holds the secret
  can recompute any day's salt, so keep it with the other secrets, not with the data.
- otherwise, a random salt per day in ``<data>/visitor-salts/<day>`` (mode 0600), created by
  whichever worker needs it first (an atomic link, so all workers of the machine share it) and
  deleted two days later. Once a day's salt is gone, nobody (the operator included) can tell
  which address a hash of that day came from, even by trying every address.

Within a day the same address and browser give the same id; across days they do not, so a
person who comes back tomorrow is a new visitor (counts over several days count visitor-days).
Behind a reverse proxy the address is the one uvicorn takes from ``X-Forwarded-For`` when the
proxy is trusted (``FORWARDED_ALLOW_IPS``, 127.0.0.1 by default).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

SECRET_ENV = "HEADRACE_VISITOR_SECRET"  # noqa: S105 - the variable's name, not a secret
SALT_DIR = "visitor-salts"
KEEP_DAYS = 2  # today and yesterday: a request received at 23:59:59 may be hashed at 00:00:00


class VisitorHasher:
    """Visitor ids for one ingest worker; salts are cached per day."""

    def __init__(self, data_dir: Path | None, secret: str | None = None) -> None:
        given = secret if secret is not None else os.environ.get(SECRET_ENV)
        self.secret = given.encode() if given else None
        self.salt_dir = data_dir / SALT_DIR if data_dir is not None else None
        self._salts: dict[date, bytes] = {}
        self._lock = threading.Lock()

    def visitor(
        self, address: str | None, user_agent: str | None, received_at_us: int
    ) -> str | None:
        """The visitor id of a request, or ``None`` when there is no address or nowhere to keep
        a salt (a replay of a bad row, whose request is long gone)."""
        if not address:
            return None
        day = datetime.fromtimestamp(received_at_us / 1_000_000, tz=UTC).date()
        salt = self.salt(day)
        if salt is None:
            return None
        message = f"{address}\n{user_agent or ''}".encode("utf-8", "replace")
        return hmac.new(salt, message, hashlib.sha256).hexdigest()[:16]

    def salt(self, day: date) -> bytes | None:
        """The salt of ``day`` (see the module docstring)."""
        found = self._salts.get(day)
        if found is not None:
            return found
        with self._lock:
            if self.secret is not None:
                label = f"headrace visitor salt {day.isoformat()}".encode()
                found = hmac.new(self.secret, label, hashlib.sha256).digest()
            elif self.salt_dir is not None:
                found = self._stored_salt(day)
            else:
                return None
            self._salts = {d: s for d, s in self._salts.items() if d >= day - timedelta(KEEP_DAYS)}
            self._salts[day] = found
            return found

    def _stored_salt(self, day: date) -> bytes:
        """The day's random salt, made now if no worker has made it yet; older ones deleted."""
        assert self.salt_dir is not None
        self.salt_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.salt_dir / day.isoformat()
        with contextlib.suppress(FileNotFoundError):
            return bytes.fromhex(path.read_text())
        tmp = self.salt_dir / f".{day.isoformat()}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # fails if another worker was first: then its salt counts
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        self._forget_old(day)
        return bytes.fromhex(path.read_text())

    def _forget_old(self, today: date) -> None:
        assert self.salt_dir is not None
        oldest = today - timedelta(KEEP_DAYS)
        for entry in self.salt_dir.iterdir():
            with contextlib.suppress(ValueError, OSError):
                if date.fromisoformat(entry.name) < oldest:
                    entry.unlink()
