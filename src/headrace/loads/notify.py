"""Outbound notifications when a load job ends, signed per the Standard Webhooks spec.

Headers: ``webhook-id`` (stable per job and status, so a receiver can drop repeats),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`` keyed with the base64-decoded part of the ``whsec_`` secret. The
body is ``{"type": "load.<status>", "timestamp": ..., "data": {"job_id", "table", "kind",
"status", "rows", "error", ...}}``. The URL is the operator's own (from the pipeline file), so it
is not put through the hostile-URL fetcher; the secret never appears in logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from headrace.config.bulk import NotifySettings
from headrace.loads.history import Job
from headrace.standard_webhooks import secret_key

log = logging.getLogger("headrace.loads.notify")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for ``body``."""
    key = secret_key(secret)
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def payload(job: Job) -> dict[str, Any]:
    """What a notification says about ``job``."""
    return {
        "type": f"load.{job.status}",
        "timestamp": datetime.fromtimestamp(job.finished_at or time.time(), UTC).isoformat(),
        "data": {
            "job_id": job.id,
            "source": job.source,
            "table": job.table_name,
            "kind": job.kind,
            "status": job.status,
            "rows": job.rows,
            "bytes": job.bytes,
            "files": job.files,
            "error": job.error,
            "reason": job.reason,
        },
    }


def send(settings: NotifySettings, job: Job) -> str | None:
    """POST the notification; ``None`` on a 2xx, else why it failed."""
    body = json.dumps(payload(job), separators=(",", ":")).encode()
    msg_id = f"load_{job.id}_{job.status}"
    timestamp = int(time.time())
    request = urllib.request.Request(  # noqa: S310 - the operator's configured http(s) URL
        settings.url,
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(settings.secret.get_secret_value(), msg_id, timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{exc.code} from the notification URL"
    except (OSError, ValueError) as exc:
        return f"cannot reach the notification URL: {exc}"
    return None if 200 <= status < 300 else f"{status} from the notification URL"
