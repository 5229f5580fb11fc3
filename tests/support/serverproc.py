"""Running ``headrace serve`` as a real subprocess for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RUNNING: list[ServerProcess] = []


def kill_leftovers() -> None:
    """SIGKILL every server a test started and left running (a failed assertion, say)."""
    while RUNNING:
        server = RUNNING.pop()
        if server.proc is not None and server.proc.poll() is None:
            server.kill()


class ServerProcess:
    """``headrace serve`` (or ``ingest``, or ``deliver``) in its own process group, so a test
    can SIGKILL all of it at once. ``port`` is the HTTP port (ingest's, or deliver's metrics
    port)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        config: Path | None = None,
        workers: int = 2,
        port: int | None = None,
        command: str = "serve",
        extra: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self.workers = workers
        self.port = port or free_port()
        self.command = command
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-{command}.log"

    def _args(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "headrace.cli",
            self.command,
            "--data-dir",
            str(self.data_dir),
        ]
        if self.command == "deliver":
            args += ["--metrics-port", str(self.port)]
        else:
            args += ["--port", str(self.port), "--workers", str(self.workers)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        return args + self.extra

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        args = self._args()
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        RUNNING.append(self)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"headrace {self.command} exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"headrace {self.command} did not become healthy:\n{self.log()}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"headrace {self.command} did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the supervisor and every child: a crash with no chance to clean up."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise
        return int(self.proc.returncode)

    def children(self) -> list[int]:
        """PIDs of the supervisor's child processes."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def metrics(self) -> dict[str, float]:
        """The /metrics values, keyed by the sample's text before its value."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values
