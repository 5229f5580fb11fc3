"""What defending a source costs: a token authorizer and a JSON Schema on, vs the same server
and the same bodies without them, in the same run.

Method: one ``headrace serve`` with two http sources into one lake: ``plain`` (no authorizer, no
schema) and ``guarded`` (``auth: token`` and a schema of the click event's six string fields,
all required). ``wrk`` POSTs the same bodies to both in turn (plain, guarded, plain, guarded…,
after a warm-up of each): single click events and 100-event arrays. The ratio guarded/plain per
scenario is the figure; the target is at least 0.85. Uses ``bench/ingest.py``'s helpers (wrk,
server start and stop); run from the repository root::

    .venv/bin/python bench/defended.py                  # 8 s per run, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import ingest as base  # bench/ingest.py, beside this file

TOKEN = "ALLOW=BENCH"  # noqa: S105 - a benchmark's throwaway token
FIELDS = ["requestid", "contextid", "callerid", "component", "action", "type"]
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {name: {"type": "string"} for name in FIELDS},
    "required": FIELDS,
}
PIPELINE = {
    "sources": {
        "plain": {"type": "http"},
        "guarded": {
            "type": "http",
            "schema": SCHEMA,
            "auth": {"type": "token", "secrets": [TOKEN]},
        },
    },
    "sinks": {"lake": {"type": "lake", "inputs": ["plain", "guarded"]}},
}


def lua_script(directory: Path, name: str, body: bytes, token: str | None) -> Path:
    body_path = directory / f"{name}.json"
    body_path.write_bytes(body)
    script = base.LUA.replace("@BODY@", json.dumps(str(body_path)))
    if token:
        script = f'wrk.headers["Authorization"] = "{token}"\n' + script
    path = directory / f"{name}.lua"
    path.write_text(script)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=2, help="plain+guarded pairs per scenario")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--workers", type=int, default=2, help="headrace ingest worker processes")
    args = parser.parse_args()
    args.wrk = base.shutil.which("wrk") or parser.error("wrk is missing: apt-get install wrk")
    args.port = base.free_port()
    with tempfile.TemporaryDirectory(prefix="headrace-defended-") as tmp:
        work = Path(tmp)
        config = work / "pipeline.json"
        config.write_text(json.dumps(PIPELINE))
        os.environ["HEADRACE_CONFIG"] = str(config)
        server = base.start_server(args, work / "data", work / "serve.log")
        results: dict[str, dict[str, list[float]]] = {}
        try:
            for scenario, events in (("single", 1), ("batch", 100)):
                batch = [base.click(i) for i in range(events)]
                body = json.dumps(batch[0] if events == 1 else batch).encode()
                scripts = {
                    "plain": lua_script(work, f"{scenario}-plain", body, None),
                    "guarded": lua_script(work, f"{scenario}-guarded", body, TOKEN),
                }
                for side, lua in scripts.items():  # warm-up
                    base.run_wrk(args, lua, f"/v1/streams/{side}/events", 3)
                results[scenario] = {"plain": [], "guarded": []}
                for _ in range(args.rounds):
                    for side, lua in scripts.items():
                        base.wait_drained(args.port, 120)
                        out = base.run_wrk(args, lua, f"/v1/streams/{side}/events", args.duration)
                        if out["non2xx"] or out["socket_errors"]:
                            raise SystemExit(f"{side} answered errors: {out}")
                        rate = out["requests"] / (out["duration_us"] / 1e6) * events
                        results[scenario][side].append(rate)
                        print(
                            f"  {scenario}/{side}: {rate:,.0f} events/s  p99={out['p99_us'] / 1000:.2f}ms"
                        )
        finally:
            base.stop_server(server)
    print(f"\nwrk -t {args.threads} -c {args.connections}, {args.duration} s runs, {args.rounds} rounds, "
          f"{args.workers} workers; guarded = token authorizer + 6-field JSON Schema")  # fmt: skip
    worst = 1.0
    for scenario, sides in results.items():
        plain, guarded = statistics.mean(sides["plain"]), statistics.mean(sides["guarded"])
        worst = min(worst, guarded / plain)
        print(f"{scenario:<7} plain {plain:>12,.0f} ev/s   guarded {guarded:>12,.0f} ev/s   "
              f"ratio {guarded / plain:.2f}x")  # fmt: skip
    print(f"target guarded/plain >= 0.85x: {'met' if worst >= 0.85 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
