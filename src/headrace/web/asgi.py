"""The ASGI contract as headrace serves it, and the answers every HTTP layer sends.

headrace is a raw ASGI application (no framework): ``Scope``, ``Receive`` and ``Send`` are the
ASGI spec's, and an ``App`` is any callable of the three. Every answer is one whole body with a
``Content-Length``, which spares the server chunked encoding. Every refusal is a JSON body
``{"error": <reason>, "message": ..., **detail}`` with a specific status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from headrace.errors import RequestRejected

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
encode_json = msgspec.json.Encoder().encode


async def send_body(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """One whole answer: ``body`` with ``headers`` (JSON unless told otherwise)."""
    length = (b"content-length", str(len(body)).encode())
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*(headers if headers is not None else JSON_HEADERS), length],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, doc: Any, status: int = 200) -> None:
    """``doc`` as a JSON answer."""
    await send_body(send, status, encode_json(doc))


async def send_error(
    send: Send, exc: RequestRejected, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """The refusal ``exc`` as its status and JSON body (with ``Retry-After`` when it says)."""
    body = {"error": exc.reason, "message": exc.message, **exc.detail}
    headers = JSON_HEADERS + (extra or [])
    retry_after = exc.detail.get("retry_after")
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send_body(send, exc.status, encode_json(body), headers)
