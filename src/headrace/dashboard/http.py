"""The dashboard's ASGI plumbing: its error, its security headers, JSON and file answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = [(b"content-type", b"application/json")]
_json = msgspec.json.Encoder()


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


def whole(text: str, digits: int) -> bool:
    """Whether ``text`` is a whole number of at most ``digits`` digits."""
    return text.isascii() and text.isdigit() and len(text) <= digits


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), if sent."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def send_body(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """One whole answer (JSON with the guarded headers unless told otherwise)."""
    length = (b"content-length", str(len(body)).encode())
    headers = headers or [*JSON, *GUARDED]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, doc: Any, status: int = 200) -> None:
    """``doc`` as a JSON answer."""
    await send_body(send, status, _json.encode(doc))


async def json_error(
    send: Send,
    status: int,
    reason: str,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """``{"error": reason, "message": message}`` with ``status``."""
    body = _json.encode({"error": reason, "message": message})
    await send_body(send, status, body, [*JSON, *GUARDED, *(extra or [])])
