"""POST → readable: how long an event takes from its POST to being readable at the sink.

Method: the script starts ``headrace serve`` on the embedded default pipeline (the lake sink,
delivery batching as it is configured out of the box) in a fresh temporary data directory on a
free loopback port. One sender thread POSTs one event a request at a steady rate (``--rate``
requests/s for ``--duration`` s), each carrying its number; it records when it sent each POST
and when its 2xx came back (the baseline: what the sender itself waits). A reader thread asks
``GET /v1/streams/latency/events?limit=1000`` (newest first) every ``--poll`` seconds and
records when it first saw each number. The figure per event is first seen - sent; the poll
interval bounds its resolution (a mean overstatement of half an interval), and each poll costs
the server a read of the newest lake files, about one core-percent at the default interval.

The default target: p50 ≤ 1.2 s and p99 ≤ 2 s. Exits 1 if an acknowledged event was never
seen within ``--settle`` s after the last POST.

    .venv/bin/python bench/latency.py                    # 100 requests/s for 20 s
    .venv/bin/python bench/latency.py --rate 400 --duration 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
STREAM = "latency"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("headrace")
    cmd = [str(exe), "serve", "--data-dir", str(data_dir), "--host", HOST, "--port", str(port)]
    cmd += ["--workers", str(workers), "--log-level", "warning"]
    log = (data_dir.parent / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=0.5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("server did not become ready in 30 s")


def send(
    port: int, rate: float, seconds: float, sent: dict[int, float], acked: dict[int, float]
) -> None:
    """POST one event every 1/rate s; record send and 2xx times (monotonic)."""
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    path = f"/v1/streams/{STREAM}/events"
    start = time.monotonic()
    n = 0
    while True:
        due = start + n / rate
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        body = json.dumps({"n": n, "page": "/bench", "action": "click"}).encode()
        sent[n] = time.monotonic()
        conn.request("POST", path, body, {"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        if 200 <= response.status < 300:
            acked[n] = time.monotonic()
        n += 1
    conn.close()


def read(port: int, poll: float, seen: dict[int, float], stop: threading.Event) -> None:
    """Poll the newest events; record when each number was first readable."""
    url = f"http://{HOST}:{port}/v1/streams/{STREAM}/events?limit=1000"
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                page = json.loads(r.read())
            now = time.monotonic()
            for event in page.get("events", []):
                seen.setdefault(int(event["data"]["n"]), now)
        except OSError:
            pass  # 404 unknown_stream until the first event is stored
        stop.wait(poll)


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return (
        f"p50 {q[49] * 1e3:7.0f} ms  p90 {q[89] * 1e3:7.0f} ms  p99 {q[98] * 1e3:7.0f} ms  "
        f"max {max(values) * 1e3:7.0f} ms  (n={len(values):,})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Time from POST to readable at the sink, on the embedded default pipeline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=100.0, help="POSTs per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between reads")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds to wait at the end")
    parser.add_argument("--workers", type=int, default=2, help="ingest workers")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="headrace-latency-") as tmp:
        port = free_port()
        data_dir = Path(tmp) / "data"
        proc = start_server(data_dir, port, args.workers)
        sent: dict[int, float] = {}
        acked: dict[int, float] = {}
        seen: dict[int, float] = {}
        stop = threading.Event()
        reader = threading.Thread(target=read, args=(port, args.poll, seen, stop), daemon=True)
        reader.start()
        try:
            send(port, args.rate, args.duration, sent, acked)
            deadline = time.monotonic() + args.settle
            while time.monotonic() < deadline and not acked.keys() <= seen.keys():
                time.sleep(0.1)
        finally:
            stop.set()
            reader.join(timeout=10)
            proc.terminate()
            proc.wait(timeout=60)
    missing = sorted(acked.keys() - seen.keys())
    print(
        f"== POST -> readable (embedded default, lake sink), {args.rate:g} POSTs/s "
        f"for {args.duration:g} s, reads every {args.poll * 1e3:.0f} ms, cores {os.cpu_count()}"
    )
    print(f"2xx (baseline)     {percentiles([acked[n] - sent[n] for n in acked])}")
    print(f"POST -> readable   {percentiles([seen[n] - sent[n] for n in acked if n in seen])}")
    readable = sorted(seen[n] - sent[n] for n in acked if n in seen)
    if readable:
        q = statistics.quantiles(readable, n=100, method="inclusive")
        met = q[49] <= 1.2 and q[98] <= 2.0
        print(f"target p50 <= 1.2 s, p99 <= 2 s: {'met' if met else 'NOT met'}")
    if missing:
        print(f"FAILED: {len(missing)} acknowledged events never readable (first: {missing[:5]})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
