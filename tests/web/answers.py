"""An ASGI ``send`` that records the answer, and request scopes to hand to handlers."""

from __future__ import annotations

import json
from typing import Any

from headrace.web.asgi import Message, Receive, Scope


def request(
    method: str = "GET",
    path: str = "/",
    *,
    headers: dict[str, str] | None = None,
    query: bytes = b"",
    client: tuple[str, int] | None = ("127.0.0.1", 5000),
) -> Scope:
    """An http scope as an ASGI server gives it (header names in lower case)."""
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": client,
    }


def body_of(*chunks: bytes, disconnect: bool = False) -> Receive:
    """A ``receive`` giving ``chunks`` (then a disconnect, if asked, instead of the last)."""
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        messages[-1] = {"type": "http.disconnect"}

    async def receive() -> Message:
        return messages.pop(0)

    return receive


class Recorder:
    """A ``send`` that keeps the answer."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def header_list(self) -> list[tuple[bytes, bytes]]:
        return list(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)
