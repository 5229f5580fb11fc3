"""Helpers of the bulk-load tests: a loopback file server and CSV exports to serve."""

from __future__ import annotations

import bz2
import gzip
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
EXPORT_HOST = "127.0.0.2"  # the export server: the only address tests allow
CANARY_HOST = "127.0.0.1"  # a server no fetch may ever reach


@dataclass
class Reply:
    """What the server answers for one path."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the body
    drip: float = 0.0  # seconds between 1 KiB pieces of the body
    length: bool = True  # send Content-Length
    fail_first: int = 0  # answer 500 this many times first


class FileServer:
    """A threaded HTTP server on a loopback address that answers from ``routes`` and counts."""

    def __init__(self, host: str) -> None:
        self.routes: dict[str, Reply] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers.items())))
                reply = owner.routes.get(self.path.split("?", 1)[0])
                if reply is None:
                    reply = Reply(b"no such file", 404)
                if reply.fail_first > 0:
                    reply.fail_first -= 1
                    reply = Reply(b"try later", 500)
                try:
                    time.sleep(reply.delay)
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    if reply.length:
                        self.send_header("Content-Length", str(len(reply.body)))
                    else:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if reply.drip:
                        for start in range(0, len(reply.body), 1024):
                            self.wfile.write(reply.body[start : start + 1024])
                            self.wfile.flush()
                            time.sleep(reply.drip)
                    else:
                        self.wfile.write(reply.body)
                    if not reply.length:
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def add(self, path: str, body: bytes = b"", **reply: Any) -> str:
        self.routes[path] = Reply(body, **reply)
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serving(host: str) -> Iterator[FileServer]:
    """A started ``FileServer`` for a fixture to yield, closed afterwards."""
    server = FileServer(host)
    server.thread.start()
    yield server
    server.close()


def throwaway_schema(prefix: str) -> Iterator[str]:
    """A unique PostgreSQL schema name for a fixture to yield; the schema is dropped after."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name))
        )


def pg_rows(schema: str, table: str, order: str = "id") -> list[tuple[Any, ...]]:
    with psycopg.connect(DSN) as conn:
        query = psycopg.sql.SQL("SELECT * FROM {} ORDER BY {}").format(
            psycopg.sql.Identifier(schema, table), psycopg.sql.Identifier(order)
        )
        return conn.execute(query).fetchall()


def csv_rows(rows: int, start: int = 0, tag: str = "v") -> bytes:
    """A header and ``rows`` rows with quoting, embedded newlines and empty fields."""
    lines = ["id,name,note,score,active,created_at"]
    for i in range(start, start + rows):
        note = (
            f'"line one\nline ""two"" {i}"' if i % 7 == 0 else ("" if i % 5 == 0 else f"{tag}{i}")
        )
        created = "" if i % 11 == 0 else f"2024-01-{1 + i % 28:02d} 10:{i % 60:02d}:00"
        lines.append(f"{i},name {i},{note},{i * 0.5},{'t' if i % 2 else 'f'},{created}")
    return ("\n".join(lines) + "\n").encode()


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "csv": lambda b: b,
    "csv.gz": gzip.compress,
    "csv.bz2": bz2.compress,
}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
