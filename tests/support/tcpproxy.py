"""A fault-injecting TCP proxy in front of a real server (PostgreSQL, moto).

It keeps its port whatever the fault, so no other process can take the port before ``heal``,
and each fault takes effect before its method returns: no test needs to wait for it.

- ``cut`` (also ``reset``): every forwarded connection and every new one is reset (RST) as soon
  as it is accepted, so a client sees the server go away (``connection reset``, ``server closed
  the connection unexpectedly``) without waiting for a timeout.
- ``blackhole``: nothing moves, in either direction, on old connections or new ones (a new one
  is accepted and then hears nothing), as when a network drops every packet; ``heal`` lets the
  held bytes through, as TCP's retransmissions would after a partition shorter than its
  timeouts.
- ``delay(seconds)``: every chunk forwarded waits that long first (latency in both directions).
- ``close_after(nbytes)``: each connection (an open one counting from now) forwards ``nbytes``
  more, then is reset mid-stream: a connection that dies during a query or a COPY.
- ``heal`` (also ``restore``): forward normally again.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

UP, CUT, BLACKHOLE, DELAY, CLOSE_AFTER = "up", "cut", "blackhole", "delay", "close after"


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` at once (RST), waking a thread blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass(eq=False)
class _Pair:
    """A forwarded connection: the client's socket, the server's, and what ``close_after``
    still lets through."""

    client: socket.socket
    upstream: socket.socket
    budget: int | None = None
    dead: bool = False
    pumping: int = 2
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finished(self) -> bool:
        """Count one direction done; whether both are."""
        with self.lock:
            self.pumping -= 1
            return self.pumping == 0

    def take(self, size: int) -> int:
        """How many of ``size`` bytes may pass (all of them without a budget)."""
        with self.lock:
            if self.budget is None:
                return size
            allowed = min(size, self.budget)
            self.budget -= allowed
            return allowed

    def reset(self) -> None:
        self.dead = True
        _reset(self.client)
        _reset(self.upstream)


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; see the module docstring. Use it as a
    context manager, or call ``close``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._changed = threading.Condition()
        self._mode = UP
        self._delay = 0.0
        self._budget = 0
        self._closed = False
        self._pairs: set[_Pair] = set()
        self._held: list[socket.socket] = []  # accepted while blackholed, not yet forwarded
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
        """Whether connections are forwarded (slowly or with a budget counts)."""
        return self._mode in (UP, DELAY, CLOSE_AFTER)

    @property
    def mode(self) -> str:
        """The fault in force: ``up``, ``cut``, ``blackhole``, ``delay`` or ``close after``."""
        return self._mode

    # -- faults ------------------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every forwarded connection and refuse new ones until ``heal``."""
        with self._changed:
            self._mode = CUT
            pairs, self._pairs = self._pairs, set()
            held, self._held = self._held, []
            self._changed.notify_all()
        for pair in pairs:
            pair.reset()
        for sock in held:
            _reset(sock)

    reset = cut

    def blackhole(self) -> None:
        """Move no byte on any connection, old or new, until ``heal``."""
        self._set(BLACKHOLE)

    def delay(self, seconds: float) -> None:
        """Hold every forwarded chunk ``seconds`` before passing it on."""
        self._set(DELAY, delay=seconds)

    def close_after(self, nbytes: int) -> None:
        """Reset each connection once it has forwarded ``nbytes`` more (both ways together)."""
        with self._changed:
            for pair in self._pairs:
                with pair.lock:
                    pair.budget = nbytes
        self._set(CLOSE_AFTER, budget=nbytes)

    def heal(self) -> None:
        """Forward normally again (what a blackhole held goes through)."""
        with self._changed:
            for pair in self._pairs:
                with pair.lock:
                    pair.budget = None
        self._set(UP)
        with self._changed:
            held, self._held = self._held, []
        for client in held:
            self._forward(client)

    restore = heal

    def _set(self, mode: str, *, delay: float = 0.0, budget: int = 0) -> None:
        with self._changed:
            self._mode = CUT if self._closed else mode
            self._delay, self._budget = delay, budget
            self._changed.notify_all()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        with self._changed:
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

    # -- forwarding --------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            with self._changed:
                mode = self._mode
                if mode == BLACKHOLE:
                    self._held.append(client)
                    continue
            if mode == CUT:
                _reset(client)
                continue
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        """Connect ``client`` to the target and pump both ways (unless a cut came meanwhile:
        a cut must see every pair)."""
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        pair = _Pair(client, upstream)
        with self._changed:
            if self._mode == CUT:
                pair.reset()
                return
            if self._mode == CLOSE_AFTER:
                pair.budget = self._budget
            self._pairs.add(pair)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self._pump, args=(pair, source, sink), name="tcpproxy-pump", daemon=True
            ).start()

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while self._passable(pair) and (data := source.recv(65536)):
                if not self._passable(pair):  # held by a blackhole that began meanwhile
                    break
                if self._mode == DELAY:
                    time.sleep(self._delay)
                allowed = pair.take(len(data))
                sink.sendall(data[:allowed])
                if allowed < len(data):
                    break
        if pair.dead or (pair.budget is not None and pair.budget <= 0):
            self._drop(pair)  # cut, or its budget ran out: reset both ends
            return
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        if pair.finished():
            self._drop(pair)  # both ways ended: forget it

    def _passable(self, pair: _Pair) -> bool:
        """Wait out a blackhole; whether the pair may still forward."""
        with self._changed:
            while self._mode == BLACKHOLE and not pair.dead:
                self._changed.wait()
            return not pair.dead

    def _drop(self, pair: _Pair) -> None:
        with self._changed:
            self._pairs.discard(pair)
        pair.reset()


__all__ = ["TcpProxy"]
