"""Reading a request without trusting it: only the headers a handler needs, a body within its
limit, whole numbers that ``int`` will take."""

from __future__ import annotations

from urllib.parse import parse_qsl

from headrace.errors import RequestRejected
from headrace.web.asgi import Receive, Scope


def whole(text: str, digits: int | None = None) -> bool:
    """Whether ``text`` is a whole number in ASCII digits (at most ``digits`` of them); "¹" is a
    digit to ``str.isdigit``, not to ``int``."""
    return text.isascii() and text.isdigit() and (digits is None or len(text) <= digits)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), if sent."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def request_headers(scope: Scope, wanted: frozenset[bytes] | None) -> dict[str, str]:
    """The headers named in ``wanted`` (all of them for ``None``), decoded, by lower-case name;
    of a header sent twice, the last value."""
    # ASGI servers give header names in lower case; decoding only the few a handler reads keeps
    # the ingest path cheap (a python authorizer may look at any, hence ``None``).
    return {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in scope["headers"]
        if wanted is None or k in wanted
    }


def client_address(scope: Scope) -> str | None:
    """The peer's address, if the server knows it."""
    client = scope.get("client")
    return client[0] if client else None


def query_params(scope: Scope, *, keep_blank_values: bool = False) -> list[tuple[str, str]]:
    """The query string's parameters, in order."""
    query = scope.get("query_string", b"").decode("latin-1")
    return parse_qsl(query, keep_blank_values=keep_blank_values)


def body_too_large(limit: int) -> RequestRejected:
    """The refusal of a body over ``limit`` bytes."""
    return RequestRejected(
        413, "body_too_large", f"the body is larger than {limit} bytes", limit=limit
    )


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to pass ``limit`` bytes: from its
    declared ``Content-Length``, else once the chunks received pass it."""
    declared = headers.get("content-length")
    if declared is not None and whole(declared) and int(declared) > limit:
        raise body_too_large(limit)
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestRejected(400, "client_disconnected", "the client went away mid-request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
