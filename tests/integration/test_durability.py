"""An acknowledged event survives SIGKILL of any headrace process and is stored exactly once."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from headrace.config.models import default_pipeline
from headrace.query.lake import LakeQuery, export_csv
from support.serverproc import ServerProcess


def stored_ids(data_dir: Path, stream: str) -> list[str]:
    pipeline = default_pipeline()
    out = io.StringIO()
    export_csv(data_dir, "lake", pipeline.sinks["lake"], LakeQuery("lake", stream), out)
    lines = out.getvalue().splitlines()[1:]
    return [line.split(",", 1)[0] for line in lines]


class Clients:
    """Threads POSTing small batches as fast as they can, remembering every acknowledged id."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.acked: list[str] = []
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(count)]

    def run(self, n: int) -> None:
        seq = 0
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                seq += 1
                body = [{"client": n, "seq": seq, "part": part} for part in range(1 + seq % 4)]
                try:
                    response = client.post(self.url, json=body)
                except httpx.HTTPError:
                    with self.lock:
                        self.errors += 1
                    time.sleep(0.02)
                    continue
                if response.status_code == 202:
                    with self.lock:
                        self.acked.extend(response.json()["ids"])

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def wait_for_more(clients: Clients, at_least: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    start = clients.count()
    while clients.count() < start + at_least:
        assert time.monotonic() < deadline, "clients made no progress"
        time.sleep(0.05)


def test_acknowledged_events_survive_sigkill_exactly_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, workers=2).start()
    url = f"{server.url}/v1/streams/orders/events"
    try:
        with Clients(url, count=6) as clients:
            for _round in range(3):
                wait_for_more(clients, 300)
                server.kill()  # the supervisor and every child, mid-traffic
                server.start()
            # single children too: the supervisor restarts them
            for victim in server.children():
                wait_for_more(clients, 200)
                os.kill(victim, signal.SIGKILL)
            wait_for_more(clients, 300)
        acked = list(clients.acked)
        assert len(acked) > 1000
        deadline = time.monotonic() + 60
        while True:
            stored = stored_ids(data_dir, "orders")
            missing = set(acked) - set(stored)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not missing, f"{len(missing)} acknowledged events are not in the lake"
        repeated = [i for i, n in Counter(stored).items() if n > 1]
        assert not repeated, f"{len(repeated)} events stored more than once"
        assert server.stop() == 0
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()
