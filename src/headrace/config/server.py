"""The ``server:`` section: how each ingest worker's HTTP server treats connections.

Three kinds of limit, each enforced per ingest worker by ``headrace.server.http_protocol``:

- the request head: the request target's length (414) and the headers' count and total size
  (431), counted as the bytes arrive so an oversized head is refused before it is held whole;
- slow clients: a deadline for the whole request head, a minimum rate for the body, and how long
  an idle keep-alive connection stays open;
- how many connections one worker holds open at once.

The defaults follow what common servers ship (Kestrel: 100 headers, 32 KiB of them, an 8 KiB
request line, 240 bytes/s for a body; nginx: 8 KiB buffers, 4 of them for headers; Apache and
gunicorn: 100 header fields), so a legitimate sender never meets them.
"""

from __future__ import annotations

from pydantic import Field

from headrace.config.base import Bytes, Model, Seconds


class ServerSettings(Model):
    """How each ingest worker's HTTP server treats connections: limits on the request head,
    deadlines for slow clients, and how many connections it holds open."""

    max_url_bytes: Bytes = Field(default=8 * 1024, ge=256, le=1024**2)
    """Longest request target (path and query string); longer answers 414 ``uri_too_long``
    and the connection is closed."""
    max_headers: int = Field(default=100, ge=8, le=10_000)
    """Most header fields in one request; more answers 431 ``headers_too_large`` and the
    connection is closed."""
    max_header_bytes: Bytes = Field(default=32 * 1024, ge=1024, le=16 * 1024**2)
    """Largest total size of a request's header lines (each counted as ``Name: value`` and its
    line end); larger answers 431 ``headers_too_large`` as soon as that many bytes have arrived,
    and the connection is closed."""
    head_timeout: Seconds = Field(default=10.0, gt=0)
    """Longest a client may take to send a request's line and headers (from accepting the
    connection for its first request, from the request's first byte afterwards); slower answers
    408 ``request_timeout`` and the connection is closed."""
    min_body_rate: Bytes = 240
    """Slowest a request body may arrive, in bytes per second on average (0: no minimum). A body
    may fall behind this pace by up to ``body_grace``; further behind, the connection is closed
    (with 408 ``request_timeout`` if nothing was answered yet). Time the server itself is not
    reading (it is busy with the body it has) does not count."""
    body_grace: Seconds = Field(default=10.0, gt=0)
    """How far a body may fall behind ``min_body_rate``: its first bytes may take this long, and
    a body that kept the pace may stall this long."""
    keepalive_timeout: Seconds = Field(default=5.0, gt=0)
    """How long an idle keep-alive connection waits for its next request before it is closed."""
    max_connections: int = Field(default=1000, ge=1)
    """Most connections one ingest worker holds open (never more than its open-file limit
    allows); a connection beyond it is answered 503 ``too_many_connections`` and closed at once."""
