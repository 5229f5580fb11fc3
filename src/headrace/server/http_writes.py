"""One write per answer: an answer's head goes out with its body, in one system call.

uvicorn writes an answer's status line and headers as soon as the app sends
``http.response.start``, and its body on ``http.response.body``: two ``send`` calls per answer.
On loopback and on a busy worker each costs about as much as the rest of a small request's
HTTP handling, so the request/response cycle's transport is wrapped: its first write, when it
is an answer's head, is held and sent joined with the next write (the body, or its first chunk
when streamed) or before the transport closes. ``100 Continue`` is never held: the client
waits for it before it sends the body.
"""

from __future__ import annotations

import asyncio
from typing import Any

RESPONSE_HEAD = b"HTTP/1.1 "
CONTINUE = b"HTTP/1.1 100 "


class HeadWithBody:
    """The transport of one request/response cycle, holding the answer's head for its body
    (not for a HEAD request, whose answer has no body write to join)."""

    __slots__ = ("_first", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._first = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._first:
            start = bytes(data[:13])
            if start == CONTINUE:  # sent at once; the answer's head is still to come
                self._transport.write(data)
                return
            self._first = False
            if start.startswith(RESPONSE_HEAD):
                self._head = bytes(data)
                return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def flush(self) -> None:
        """Send a held head now."""
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the transport's
        return getattr(self._transport, name)
