"""A TCP proxy in front of a real server (PostgreSQL, moto) that a test can cut and restore.

Unlike ``tests/pgproxy.py`` it keeps its port while cut: a cut proxy resets every forwarded
connection and every new one as soon as it is accepted, so a client sees the server go away
(``connection reset``, ``server closed the connection unexpectedly``) without waiting for a
timeout, and no other process can take the port before ``restore``. ``cut`` and ``restore``
take effect before they return: no test needs to wait for them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` at once (RST), waking a thread blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; see the module docstring. Use it as a
    context manager, or call ``close``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._up = True
        self._closed = False
        self._open: set[socket.socket] = set()
        self.accepted = 0
        """Connections accepted so far (refused ones included)."""
        self._thread = threading.Thread(target=self._accept, name="tcpproxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, for an HTTP server behind the proxy."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        """Whether connections are forwarded."""
        return self._up

    def cut(self) -> None:
        """Reset every forwarded connection and refuse new ones until ``restore``."""
        with self._lock:
            self._up = False
            sockets, self._open = self._open, set()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        """Forward new connections again."""
        with self._lock:
            self._up = not self._closed

    def close(self) -> None:
        """Stop listening and drop every connection."""
        with self._lock:
            self._closed = True
        self.cut()
        _reset(self._listener)
        self._thread.join(10)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            upstream = self._connect_upstream() if self._up else None
            if upstream is None or not self._track(client, upstream):
                for sock in (client, upstream):
                    if sock is not None:
                        _reset(sock)
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), name="tcpproxy-pump", daemon=True
                ).start()

    def _connect_upstream(self) -> socket.socket | None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            return None
        upstream.settimeout(None)
        return upstream

    def _track(self, client: socket.socket, upstream: socket.socket) -> bool:
        """Register a forwarded pair, unless a cut came meanwhile (it must see every pair)."""
        with self._lock:
            if self._up:
                self._open.update((client, upstream))
            return self._up

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


__all__ = ["TcpProxy"]
