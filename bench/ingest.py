"""HTTP ingest benchmark: durable ingest against the same server's no-op ceiling.

Method: the script starts its own ``headrace serve --noop-endpoint`` (fresh temporary data
directory, a free port on 127.0.0.1) and drives it with ``wrk`` over loopback. For each scenario
it POSTs one fixed body to ``/_noop`` (the server reads the body and answers 202, storing
nothing) and to ``/v1/streams/bench/events`` (decoded, framed, written and fsync'd before the
202), after a short warm-up of both, alternating noop, durable, noop, durable, ... so that drift
(CPU frequency, page cache, segment growth) affects both sides. Scenarios:

* ``single``: one ~150-byte click-like JSON object per request; requests/s and p99 latency;
* ``batch``: a JSON array of 100 such objects per request; events/s.

The figure per side is the mean over its rounds (p99: the worst round); the ratio is
durable/noop. A Lua ``response`` callback counts non-2xx answers; any on a durable run, or any
socket error, makes the script exit 1. After each durable run ``/metrics`` is read to report
accepted events and buffer commits (one fsync each), i.e. events per fsync.

wrk, the ingest workers and the delivery process share the machine's cores, so the absolute
figures depend on ``--workers``, ``--connections`` and ``--threads``; compare ratios within a run.

Run from the repository root (needs ``wrk``: ``apt-get install wrk``)::

    .venv/bin/python bench/ingest.py                    # both scenarios, 10 s per run
    .venv/bin/python bench/ingest.py --scenario single --duration 5 --connections 32
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
DURABLE_PATH = "/v1/streams/bench/events"
NOOP_PATH = "/_noop"
BATCH_SIZE = 100

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(@BODY@, "rb"))
wrk.body = f:read("*a")
f:close()
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Run:
    """One wrk run's figures."""

    scenario: str
    side: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    events_per_request: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def eps(self) -> float:
        return self.rps * self.events_per_request


def click(i: int) -> dict[str, str]:
    """A small click-like event (about 150 bytes as JSON)."""
    return {
        "requestid": f"req-{i:08d}-9f1c2e7a4b3d",
        "contextid": f"ctx-{i % 977:06d}-a81f",
        "callerid": f"user-{i % 4093:06d}",
        "component": "button",
        "action": "click",
        "type": "ui",
        "page": "/checkout",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (our own http URL)
        return int(resp.status), resp.read().decode()


def start_server(
    args: argparse.Namespace, data_dir: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("headrace")
    prefix = [str(exe)] if exe.exists() else [sys.executable, "-m", "headrace.cli"]
    cmd = [*prefix, "serve", "--data-dir", str(data_dir), "--host", HOST, "--port", str(args.port)]
    cmd += ["--workers", str(args.workers), "--noop-endpoint", "--log-level", "warning"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if http_get(f"http://{HOST}:{args.port}/healthz", timeout=0.5)[0] == 200:
                time.sleep(0.5)  # let every worker finish its startup, not just the first one
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    stop_server(proc)
    sys.exit(f"server did not become healthy in 30 s:\n{log_path.read_text()}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def metrics(port: int) -> dict[str, float]:
    """Counters summed over their labels."""
    totals: dict[str, float] = {}
    for line in http_get(f"http://{HOST}:{port}/metrics")[1].splitlines():
        match = re.match(r"^([a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if match:
            totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


def run_wrk(args: argparse.Namespace, lua: Path, path: str, seconds: float) -> dict[str, int]:
    cmd = ["wrk", "--latency", "-t", str(args.threads), "-c", str(args.connections)]
    cmd += [
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        f"http://{HOST}:{args.port}{path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"no BENCH line in wrk output:\n{out}")
    return {k: int(float(v)) for k, v in (kv.split("=") for kv in line.split()[1:])}


def measure(args: argparse.Namespace, scenario: str, lua: Path, events: int) -> list[Run]:
    sides = {"noop": NOOP_PATH, "durable": DURABLE_PATH}
    for side, path in sides.items():
        print(f"  warm-up {scenario}/{side} {args.warmup:g}s", flush=True)
        run_wrk(args, lua, path, args.warmup)
    runs: list[Run] = []
    for round_no in range(1, args.rounds + 1):
        for side, path in sides.items():
            before = metrics(args.port) if side == "durable" else {}
            r = run_wrk(args, lua, path, args.duration)
            run = Run(
                scenario,
                side,
                r["requests"],
                r["duration_us"] / 1e6,
                r["p50_us"] / 1e3,
                r["p99_us"] / 1e3,
                r["non2xx"],
                r["socket_errors"],
                events,
            )
            note = ""
            if side == "durable":
                time.sleep(2.0)  # workers publish their counters about once a second
                after = metrics(args.port)
                accepted = after.get("headrace_events_accepted_total", 0) - before.get(
                    "headrace_events_accepted_total", 0
                )
                commits = after.get("headrace_buffer_commits_total", 0) - before.get(
                    "headrace_buffer_commits_total", 0
                )
                per = accepted / commits if commits else float("nan")
                note = f"  accepted={accepted:.0f} commits={commits:.0f} events/fsync={per:.1f}"
            print(
                f"  round {round_no} {scenario}/{side}: {run.rps:,.0f} req/s "
                f"{run.eps:,.0f} ev/s p99={run.p99_ms:.2f}ms non2xx={run.non2xx} "
                f"sock_err={run.socket_errors}{note}",
                flush=True,
            )
            runs.append(run)
            time.sleep(0.5)
    return runs


def report(args: argparse.Namespace, runs: list[Run], sizes: dict[str, int], wrk: str) -> int:
    print("\n== method ==")
    print(f"wrk: {wrk}; -t {args.threads} -c {args.connections} -d {args.duration:g}s --latency")
    print(f"server: headrace serve --workers {args.workers} (+1 delivery process) on {HOST}")
    print(
        f"cores: {os.cpu_count()}; warm-up {args.warmup:g}s per side; {args.rounds} rounds "
        "alternating noop/durable; rate = mean of rounds, p99 = worst round"
    )
    print("bodies: " + ", ".join(f"{k} {v} bytes" for k, v in sizes.items()))
    print("\n== results ==")
    head = f"{'scenario':<8} {'side':<8} {'req/s':>10} {'events/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'non2xx':>7}"
    print(head)
    print("-" * len(head))
    status = 0
    for scenario in dict.fromkeys(r.scenario for r in runs):
        mean: dict[str, float] = {}
        for side in ("noop", "durable"):
            group = [r for r in runs if r.scenario == scenario and r.side == side]
            mean[side] = statistics.mean(r.eps for r in group)
            rps = statistics.mean(r.rps for r in group)
            p50 = statistics.mean(r.p50_ms for r in group)
            p99 = max(r.p99_ms for r in group)
            bad = sum(r.non2xx for r in group)
            print(
                f"{scenario:<8} {side:<8} {rps:>10,.0f} {mean[side]:>11,.0f} {p50:>8.2f} "
                f"{p99:>8.2f} {bad:>7}"
            )
            if side == "durable" and bad:
                status = 1
            if any(r.socket_errors for r in group):
                status = 1
        ratio = mean["durable"] / mean["noop"]
        if scenario == "single":
            verdict = f"target >= 0.80x: {'met' if ratio >= 0.8 else 'NOT met'}"
        else:
            verdict = (
                f"target >= 500,000 events/s: {'met' if mean['durable'] >= 500_000 else 'NOT met'}"
            )
        print(f"{scenario:<8} ratio durable/noop = {ratio:.2f}x  ({verdict})")
    if status:
        print("\nFAILED: durable runs returned non-2xx answers or wrk saw socket errors")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark headrace's durable HTTP ingest against its /_noop ceiling with wrk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scenario", choices=["single", "batch", "all"], default="all")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per side")
    parser.add_argument("--rounds", type=int, default=2, help="noop+durable pairs per scenario")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--workers", type=int, default=2, help="headrace ingest worker processes")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "wrk not found: install it with `apt-get install wrk` (Debian/Ubuntu)", file=sys.stderr
        )
        return 2
    version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    args.port = free_port()
    scenarios = ["single", "batch"] if args.scenario == "all" else [args.scenario]
    with tempfile.TemporaryDirectory(prefix="headrace-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bodies = {
            "single": json.dumps(click(1), separators=(",", ":")).encode(),
            "batch": json.dumps(
                [click(i) for i in range(BATCH_SIZE)], separators=(",", ":")
            ).encode(),
        }
        luas: dict[str, Path] = {}
        for name in scenarios:
            (tmp / f"{name}.json").write_bytes(bodies[name])
            luas[name] = tmp / f"{name}.lua"
            luas[name].write_text(LUA.replace("@BODY@", json.dumps(str(tmp / f"{name}.json"))))
        server = start_server(args, tmp / "data", tmp / "server.log")
        print(f"server pid {server.pid} on {HOST}:{args.port}, data in {tmp / 'data'}", flush=True)
        runs: list[Run] = []
        try:
            for name in scenarios:
                events = 1 if name == "single" else BATCH_SIZE
                runs += measure(args, name, luas[name], events)
        finally:
            stop_server(server)
        sizes = {name: len(bodies[name]) for name in scenarios}
        return report(args, runs, sizes, version)


if __name__ == "__main__":
    sys.exit(main())
