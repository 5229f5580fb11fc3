"""The dashboard's ASGI plumbing: its error, its security headers, JSON and file answers (over
the shared ``headrace.web`` helpers)."""

from __future__ import annotations

from typing import Any

from headrace.web import asgi
from headrace.web.asgi import JSON_HEADERS as JSON
from headrace.web.asgi import Send, encode_json


class DashboardError(Exception):
    """A dashboard request that cannot be answered as asked."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


# The dashboard's own pages and answers: never framed by another site (clickjacking an operator's
# retry button), never sniffed as another type, scripts only from this server. uPlot sets inline
# styles, hence style-src 'unsafe-inline'. The tracker script gets only nosniff: customer pages
# on other sites load it.
NOSNIFF = (b"x-content-type-options", b"nosniff")
GUARDED = [
    NOSNIFF,
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


async def send_body(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """One whole answer (JSON with the guarded headers unless told otherwise)."""
    await asgi.send_body(send, status, body, headers or [*JSON, *GUARDED])


async def send_json(send: Send, doc: Any, status: int = 200) -> None:
    """``doc`` as a JSON answer."""
    await send_body(send, status, encode_json(doc))


async def json_error(
    send: Send,
    status: int,
    reason: str,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """``{"error": reason, "message": message}`` with ``status``."""
    body = encode_json({"error": reason, "message": message})
    await send_body(send, status, body, [*JSON, *GUARDED, *(extra or [])])
