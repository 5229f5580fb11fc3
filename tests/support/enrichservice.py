"""A real HTTP lookup service for enrichment tests: slow, failing and erroring on request."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


@dataclass
class Behaviour:
    """How the service misbehaves."""

    fail_every: int = 0  # every Nth request answers 503 (never twice running for one path)
    always_fail: bool = False  # every request answers 500
    slow_ids: set[str] = field(default_factory=set)  # these sleep ``slow_seconds``
    slow_seconds: float = 1.0
    slow_once_ids: set[str] = field(default_factory=set)  # the first request sleeps, then fast
    error_ids: set[str] = field(default_factory=set)  # these answer 500 (a per-id server bug)
    missing_ids: set[str] = field(default_factory=set)  # these answer 404
    delay: float = 0.0  # every request takes this long
    drip_ids: set[str] = field(default_factory=set)  # these send their answer a byte per 0.3 s
    huge_ids: set[str] = field(default_factory=set)  # these answer 2 MiB of JSON
    requests: Counter[str] = field(default_factory=Counter)
    just_failed: set[str] = field(default_factory=set)
    total: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        b = self.behaviour
        with b.lock:
            b.total += 1
            number = b.total
            b.requests[self.path] += 1
            first = b.requests[self.path] == 1
            b.in_flight += 1
            b.max_in_flight = max(b.max_in_flight, b.in_flight)
        try:
            ident = unquote(self.path.rsplit("/", 1)[-1])
            if b.delay:
                time.sleep(b.delay)
            if ident in b.slow_ids or (ident in b.slow_once_ids and first):
                time.sleep(b.slow_seconds)
            if ident in b.drip_ids:
                self._drip(b'{"species": "slow"}')
            elif ident in b.huge_ids:
                self._send(200, {"species": "x" * (2 * 1024 * 1024)})
            elif b.always_fail:
                self._send(500, {"error": "down"})
            elif ident in b.error_ids:
                self._send(500, {"error": "cannot render this mysfit"})
            elif ident in b.missing_ids:  # before the 503s, so "not retried" is countable
                self._send(404, {"error": "no such mysfit"})
            elif b.fail_every and number % b.fail_every == 0 and self.path not in b.just_failed:
                b.just_failed.add(self.path)
                self._send(503, {"error": "busy"})
            else:
                b.just_failed.discard(self.path)
                self._send(200, {"mysfitId": ident, "species": f"species-{ident}",
                                 "goodevil": "Good", "lawchaos": "Neutral", "age": len(ident)})  # fmt: skip
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with b.lock:
                b.in_flight -= 1

    def _send(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drip(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        for byte in payload:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.3)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def lookup_service(behaviour: Behaviour | None = None) -> Iterator[tuple[str, Behaviour]]:
    """Serve ``GET /mysfits/<id>`` on a free loopback port."""
    b = behaviour or Behaviour()
    handler = type("Handler", (_Handler,), {"behaviour": b})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", b
    finally:
        server.shutdown()
        server.server_close()
