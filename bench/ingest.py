"""HTTP ingest benchmark: durable ingest against the same server's no-op ceiling.

Method: the script starts its own ``headrace serve --noop-endpoint`` (fresh temporary data
directory, a free port on 127.0.0.1) and drives it with ``wrk`` over loopback. For each scenario
it POSTs one fixed body to ``/_noop`` (the server reads the body and answers 202, storing
nothing), to ``/_decoded/v1/streams/bench/events`` (the source's whole request path, decode,
ids and answer, but the commit: nothing stored) and to ``/v1/streams/bench/events`` (decoded,
framed, written and fsync'd before the 202), after a short warm-up of each, alternating noop,
decoded, durable, noop, ... so that drift (CPU frequency, page cache, segment growth) affects
every side. Scenarios:

* ``single``: one ~150-byte click-like JSON object per request; requests/s and p99 latency;
* ``batch``: a JSON array of 100 such objects per request; events/s.

The figure per side is the mean over its rounds (p99: the worst round); the ratios are
durable/noop (what headrace costs over the HTTP server) and durable/decoded (what the durable
commit costs). A Lua ``response`` callback counts non-2xx answers; any on a durable run, or any
socket error, makes the script exit 1. After each durable run ``/metrics`` is read to report
accepted events and buffer commits (one fsync each), i.e. events per fsync. Each run starts
once delivery has caught up with the previous durable run (``headrace_sink_backlog_bytes`` is 0),
so a backlog never eats the CPU of the next run. Each run's line shows the CPU used by every
server process and by wrk (Linux /proc), which shows how the connections were spread over the
workers: the workers share one listening socket, so one of them may take most connections.

wrk, the ingest workers and the delivery process share the machine's cores, so the absolute
figures depend on ``--workers``, ``--connections`` and ``--threads``; compare ratios within a run.
On a 2-core machine, ``-t 2 -c 64`` with 2 workers spread connections most evenly in our tries.

With ``--profile`` the server runs with ``HEADRACE_STAGE_CLOCK`` (``bench/stageprofile.py``,
``headrace.telemetry.stageclock``): each worker clocks the CPU of its stages (receive: headers
and body; authorize, decode, validate, ids, frame encode, answer; write + fsync on the commit
thread) and the wall time each request waits for its fsync, and every scenario ends with a
table of CPU µs per request and per event for each stage, over its durable runs. The HTTP
server's share is the no-op runs' CPU per request of the workers' main threads; what neither
covers is a row of its own, so the rows add up to the workers' whole CPU. The clocks cost CPU
themselves: compare the durable/noop ratio of a run with ``--profile`` and one without.

Run from the repository root (needs ``wrk``: ``apt-get install wrk``)::

    .venv/bin/python bench/ingest.py                    # both scenarios, 10 s per run
    .venv/bin/python bench/ingest.py --scenario single --duration 5 --connections 128
    .venv/bin/python bench/ingest.py --profile --profile-out /tmp/p1.json   # and per-stage CPU
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from stageprofile import Clocks, Profile, clock_cost_ns, read_clocks, summed

HOST = "127.0.0.1"
DURABLE_PATH = "/v1/streams/bench/events"
NOOP_PATH = "/_noop"
DECODED_PATH = "/_decoded" + DURABLE_PATH  # the whole request path but the commit
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
    events_per_request: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    counters: dict[str, float] = field(default_factory=dict)
    clocks: Clocks | None = None  # the workers' stage clocks over the run (``--profile``)

    @property
    def rps(self) -> float:
        """Successful (2xx) requests per second."""
        return (self.requests - self.non2xx) / self.seconds

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
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http URL we build)
        return int(resp.status), resp.read().decode()


def start_server(
    args: argparse.Namespace, data_dir: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("headrace")
    prefix = [str(exe)] if exe.exists() else [sys.executable, "-m", "headrace.cli"]
    cmd = [*prefix, "serve", "--data-dir", str(data_dir), "--host", HOST, "--port", str(args.port)]
    cmd += ["--workers", str(args.workers), "--noop-endpoint", "--log-level", "warning"]
    env = dict(os.environ)
    env.pop("HEADRACE_STAGE_CLOCK", None)
    if args.clock_dir is not None:
        env["HEADRACE_STAGE_CLOCK"] = str(args.clock_dir)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
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
    """Every metric of ``/metrics``, summed over its labels."""
    totals: dict[str, float] = {}
    for line in http_get(f"http://{HOST}:{port}/metrics")[1].splitlines():
        match = re.match(r"^([a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if match:
            totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


def wait_drained(port: int, timeout: float) -> None:
    """Wait until delivery has caught up, so its backlog does not eat the next run's CPU."""
    start = time.monotonic()
    while metrics(port).get("headrace_sink_backlog_bytes", 0.0) > 0:
        if time.monotonic() - start > timeout:
            print(f"  warning: delivery backlog not drained after {timeout:g}s", flush=True)
            return
        time.sleep(0.5)
    if time.monotonic() - start > 1:
        print(f"  (delivery caught up after {time.monotonic() - start:.0f}s)", flush=True)


def server_processes(server_pid: int) -> dict[str, int]:
    """The server's children by role (Linux /proc; spawn order: delivery, then the workers)."""
    try:
        children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
        labels: dict[str, int] = {}
        for pid in sorted(map(int, children)):
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                labels["delivery" if not labels else f"w{len(labels) - 1}"] = pid
        return labels
    except OSError:
        return {}


def cpu_seconds(procs: dict[str, int]) -> dict[str, float]:
    """User+system CPU seconds of each process, and of reaped children (wrk) as ``wrk``."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"wrk": usage.ru_utime + usage.ru_stime}
    for label, pid in procs.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[label] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return out


def run_wrk(args: argparse.Namespace, lua: Path, path: str, seconds: int) -> dict[str, int]:
    cmd = [args.wrk, "--latency", "-t", str(args.threads), "-c", str(args.connections)]
    cmd += ["-d", f"{seconds}s", "--timeout", "10s", "-s", str(lua)]
    proc = subprocess.run(
        [*cmd, f"http://{HOST}:{args.port}{path}"], capture_output=True, text=True
    )
    out = proc.stdout
    if proc.returncode != 0:
        sys.exit(f"wrk failed ({proc.returncode}): {proc.stderr}{out}")
    line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"no BENCH line in wrk output:\n{out}")
    return {k: int(float(v)) for k, v in (kv.split("=") for kv in line.split()[1:])}


def worker_clocks(args: argparse.Namespace, procs: dict[str, int]) -> Clocks | None:
    """The ingest workers' stage clocks as they last wrote them (``None`` without --profile)."""
    if args.clock_dir is None:
        return None
    workers = {pid for label, pid in procs.items() if label.startswith("w")}
    return summed(read_clocks(args.clock_dir), workers)


def measure(args: argparse.Namespace, scenario: str, lua: Path, events: int) -> list[Run]:
    sides = {"noop": NOOP_PATH, "decoded": DECODED_PATH, "durable": DURABLE_PATH}
    for side, path in sides.items():
        wait_drained(args.port, args.drain_timeout)
        print(f"  warm-up {scenario}/{side} {args.warmup}s", flush=True)
        run_wrk(args, lua, path, args.warmup)
    runs: list[Run] = []
    for round_no in range(1, args.rounds + 1):
        for side, path in sides.items():
            wait_drained(args.port, args.drain_timeout)
            procs = server_processes(args.server_pid)
            before, cpu0 = metrics(args.port), cpu_seconds(procs)
            clocks0 = worker_clocks(args, procs)
            r = run_wrk(args, lua, path, args.duration)
            cpu1 = cpu_seconds(procs)
            run = Run(
                scenario,
                side,
                events,
                r["requests"],
                r["duration_us"] / 1e6,
                r["p50_us"] / 1e3,
                r["p99_us"] / 1e3,
                r["non2xx"],
                r["socket_errors"],
            )
            used = {k: (cpu1[k] - cpu0[k]) / run.seconds for k in sorted(cpu1) if k in cpu0}
            cpu = " ".join(f"{k}={v:.0%}" for k, v in used.items())
            workers = [v for k, v in used.items() if k.startswith("w") and k != "wrk"]
            if len(workers) > 1 and min(workers) < 0.25 * max(workers):
                cpu += "  <- connections unevenly spread over the workers"
            note = ""
            if side == "durable":
                time.sleep(2.0)  # workers publish their counters about once a second
                after = metrics(args.port)
                for name in ("headrace_events_accepted_total", "headrace_buffer_commits_total"):
                    run.counters[name] = after.get(name, 0.0) - before.get(name, 0.0)
                accepted, commits = run.counters.values()
                note = f" accepted={accepted:.0f} commits={commits:.0f}"
                note += f" events/fsync={accepted / max(commits, 1):.1f}"
            elif clocks0 is not None:
                time.sleep(1.5)  # the workers write their clocks every 0.5 s
            clocks1 = worker_clocks(args, procs)
            if clocks0 is not None and clocks1 is not None:
                run.clocks = clocks1.since(clocks0)
            print(
                f"  round {round_no} {scenario}/{side}: {run.rps:,.0f} req/s {run.eps:,.0f} ev/s"
                f" p99={run.p99_ms:.2f}ms non2xx={run.non2xx} sock_err={run.socket_errors}"
                f"{note}\n    cpu (100% = one core): {cpu}",
                flush=True,
            )
            runs.append(run)
    return runs


def report(args: argparse.Namespace, runs: list[Run], sizes: dict[str, int], wrk: str) -> int:
    print("\n== method ==")
    print(f"wrk: {wrk}; -t {args.threads} -c {args.connections} -d {args.duration}s --latency")
    print(f"server: headrace serve --workers {args.workers} (+1 delivery process) on {HOST}")
    print(
        f"cores: {os.cpu_count()}; warm-up {args.warmup}s per side; {args.rounds} rounds "
        "alternating noop/decoded/durable; rate = mean of rounds, p99 = worst round"
    )
    print("each run starts after delivery has drained the previous durable run's backlog")
    print("req/s and events/s count 2xx answers only; wrk latency is not corrected for omission")
    print("bodies: " + ", ".join(f"{k} {v} bytes" for k, v in sizes.items()))
    print("\n== results ==")
    head = f"{'scenario':<8} {'side':<8} {'req/s':>10} {'events/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'non2xx':>7}"
    print(head)
    print("-" * len(head))
    status = 0
    for scenario in dict.fromkeys(r.scenario for r in runs):
        mean: dict[str, float] = {}
        for side in ("noop", "decoded", "durable"):
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
        durable = [r for r in runs if r.scenario == scenario and r.side == "durable"]
        accepted = sum(r.counters.get("headrace_events_accepted_total", 0.0) for r in durable)
        commits = sum(r.counters.get("headrace_buffer_commits_total", 0.0) for r in durable)
        print(
            f"{scenario:<8} /metrics over durable runs: {accepted:,.0f} events accepted, "
            f"{commits:,.0f} buffer commits (fsyncs), {accepted / max(commits, 1):,.1f} events/fsync"
        )
        ratio = mean["durable"] / mean["noop"]
        if scenario == "single":
            verdict = f"target >= 0.80x: {'met' if ratio >= 0.8 else 'NOT met'}"
        else:
            verdict = (
                f"target >= 500,000 events/s: {'met' if mean['durable'] >= 500_000 else 'NOT met'}"
            )
        if any(r.non2xx or r.socket_errors for r in durable):
            verdict = "not valid: the durable runs had errors"
        print(f"{scenario:<8} ratio durable/noop = {ratio:.2f}x  ({verdict})")
        decoded = mean["durable"] / mean["decoded"]
        print(
            f"{scenario:<8} ratio durable/decoded = {decoded:.2f}x  (what the commit costs; "
            f"target >= 0.80x: {'met' if decoded >= 0.8 else 'NOT met'})"
        )
        args.figures[f"{scenario} durable/decoded"] = decoded
        args.figures[f"{scenario} decoded events/s"] = mean["decoded"]
        args.figures[f"{scenario} durable/noop"] = ratio
        args.figures[f"{scenario} durable events/s"] = mean["durable"]
        args.figures[f"{scenario} noop events/s"] = mean["noop"]
    if status:
        print("\nFAILED: durable runs returned non-2xx answers or wrk saw socket errors")
    return status


MAIN_STAGES = (
    "receive",
    "authorize",
    "decode",
    "validate",
    "ids",
    "map",
    "frame encode",
    "answer",
    "settle",
)
"""The stages a worker clocks on its event loop's thread (``ingest/pipeline.py``, the local
buffer's ``writer.py``), in the order of the request path."""


def stage_profile(scenario: str, runs: list[Run]) -> Profile | None:
    """The per-stage table of a scenario's durable runs (``None`` without clocks)."""
    durable = [r for r in runs if r.scenario == scenario and r.side == "durable" and r.clocks]
    noop = [r for r in runs if r.scenario == scenario and r.side == "noop" and r.clocks]
    if not durable or not noop:
        return None
    d = Clocks()
    for run in durable:
        assert run.clocks is not None
        d = d.plus(run.clocks)
    noop_main = sum(r.clocks.threads.get("MainThread", 0) for r in noop if r.clocks)
    noop_requests = sum(r.requests - r.non2xx for r in noop)
    requests = d.calls("answer")  # the 2xx the workers sent within the clocks' window
    events = requests * durable[0].events_per_request
    main, committer = d.threads.get("MainThread", 0), d.threads.get("group-commit", 0)
    rest = main - sum(d.cpu(s) for s in MAIN_STAGES)
    http = min(rest, round(noop_main / max(noop_requests, 1) * requests))
    profile = Profile(f"ingest {scenario}, durable", requests, events)
    profile.add("HTTP parse, routing, send, loop (as on /_noop)", http)
    for stage in MAIN_STAGES:
        if d.calls(stage):
            profile.add(stage, d.cpu(stage), d.calls(stage))
    profile.add("main thread, rest (metrics, awaiting the commit)", rest - http)
    profile.add("write + fsync (commit thread)", d.cpu("write + fsync"), d.calls("write + fsync"))
    profile.add("commit thread, rest (queue, wake-ups)", committer - d.cpu("write + fsync"))
    profile.add("other threads", d.process_cpu_ns - main - committer)
    commits, waits = d.calls("write + fsync"), d.calls("fsync wait")
    profile.waits.append(
        ("fsync wait per request, mean", d.wall("fsync wait") / max(waits, 1) / 1e3, "µs")
    )
    profile.waits.append(
        ("write + fsync per commit, mean", d.wall("write + fsync") / max(commits, 1) / 1e3, "µs")
    )
    profile.waits.append(("requests per commit", waits / max(commits, 1), ""))
    decoded = [r for r in runs if r.scenario == scenario and r.side == "decoded" and r.clocks]
    decoded_main = sum(r.clocks.threads.get("MainThread", 0) for r in decoded if r.clocks)
    decoded_requests = sum(r.requests - r.non2xx for r in decoded)
    profile.notes += [
        f"the no-op runs' main threads: {noop_main / 1e3 / max(noop_requests, 1):.2f} µs CPU "
        f"per request over {noop_requests:,} requests (the HTTP server's own cost)",
        f"the decoded runs' main threads: {decoded_main / 1e3 / max(decoded_requests, 1):.2f} µs "
        f"CPU per request over {decoded_requests:,} requests (all but the commit); the durable "
        f"runs': {main / 1e3 / max(requests, 1):.2f} µs",
        "frame encode: the buffered request built (1 call) and its frame encoded (1 call)",
    ]
    return profile


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark headrace's durable HTTP ingest against its /_noop ceiling with wrk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Example: .venv/bin/python bench/ingest.py --scenario single --duration 5",
    )
    parser.add_argument(
        "--scenario",
        choices=["single", "batch", "all"],
        default="all",
        help=f"single: one ~150-byte event per POST; batch: {BATCH_SIZE}-event JSON arrays",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per side")
    parser.add_argument("--rounds", type=int, default=2, help="noop+durable pairs per scenario")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--workers", type=int, default=2, help="headrace ingest worker processes")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="clock each stage in the workers (HEADRACE_STAGE_CLOCK) and print CPU per stage",
    )
    parser.add_argument(
        "--profile-out",
        type=Path,
        help="write the figures (and with --profile the tables) as JSON, for bench/stageprofile.py",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        help="longest wait for delivery to catch up before a run",
    )
    args = parser.parse_args()
    if min(args.duration, args.warmup, args.rounds, args.connections, args.threads) < 1:
        parser.error("--duration, --warmup, --rounds, --connections and --threads must be >= 1")
    wrk = args.wrk = shutil.which("wrk")
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
        args.clock_dir = tmp / "clock" if args.profile else None
        args.figures = {}
        server = start_server(args, tmp / "data", tmp / "server.log")
        args.server_pid = server.pid
        print(f"server pid {server.pid} on {HOST}:{args.port}, data in {tmp / 'data'}", flush=True)
        runs: list[Run] = []
        try:
            for name in scenarios:
                events = 1 if name == "single" else BATCH_SIZE
                runs += measure(args, name, luas[name], events)
        finally:
            stop_server(server)
        sizes = {name: len(bodies[name]) for name in scenarios}
        status = report(args, runs, sizes, version)
    profiles = [p for p in (stage_profile(name, runs) for name in scenarios) if p is not None]
    for profile in profiles:
        profile.print()
    if profiles:
        print(f"\neach clocked call costs about {clock_cost_ns() / 1e3:.2f} µs CPU (this process)")
    if args.profile_out is not None:
        doc = {"profiles": [p.as_dict() for p in profiles], "figures": args.figures}
        args.profile_out.write_text(json.dumps(doc, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
