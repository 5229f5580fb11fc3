"""The deployment files (docs/deploy.md) checked as far as this machine allows: no container
engine runs here, so the image is not built; instead every command the Dockerfile, the Compose
file and the systemd units give headrace is parsed by headrace's own command line, the trial's
pipeline file validates, the NATS configuration passes ``nats-server -t``, the image's health
check runs against a live server, and every file they mount or copy exists."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from headrace.cli import main
from headrace.config.load import load_pipeline
from support.natsserver import binary
from support.serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def parses(args: list[str]) -> None:
    """``headrace ARGS`` is a command line headrace takes (parsed, not run)."""
    with main.make_context("headrace", list(args), resilient_parsing=False) as ctx:
        command = main.get_command(ctx, args[0])
        assert command is not None, args
        command.make_context(args[0], list(args[1:]), parent=ctx)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_compose_services_run_headrace_commands_it_takes() -> None:
    services = compose()["services"]
    assert {"nats1", "nats2", "nats3", "postgres", "ingest", "deliver", "lb"} <= services.keys()
    for name in ("ingest", "deliver"):
        parses(services[name]["command"])
        assert services[name]["deploy"]["replicas"] == 2
    assert services["deliver"]["environment"]["HEADRACE_HEALTH_PORT"] == "8081"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_the_trial_pipeline_validates_and_refuses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_TOKEN", "t")
    monkeypatch.setenv("DATABASE_URL", "postgresql://headrace@postgres/headrace")
    pipeline = load_pipeline(ROOT / "deploy" / "pipeline.yaml")
    assert pipeline.buffer.type == "nats" and pipeline.buffer.replicas == 3
    assert [sink.type for sink in pipeline.sinks.values()] == ["postgres"]


def test_the_nats_configuration_passes_the_servers_own_check(tmp_path: Path) -> None:
    conf = (ROOT / "deploy" / "nats" / "cluster.conf").read_text()
    assert "sync_interval: always" in conf  # an ack means on disk on a quorum
    local = tmp_path / "cluster.conf"
    local.write_text(conf.replace("store_dir: /data", f"store_dir: {tmp_path / 'js'}"))
    env = {**os.environ, "NATS_NAME": "n1", "NATS_TOKEN": "secret"}
    checked = subprocess.run([binary(), "-c", str(local), "-t"], capture_output=True, text=True,
                             env=env, timeout=30)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_image_runs_as_a_user_with_a_health_check() -> None:
    lines = dockerfile()
    user = [line for line in lines if line.startswith("USER ")]
    assert user == ["USER headrace"]
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    entry = json.loads(next(line for line in lines if line.startswith("ENTRYPOINT "))[11:])
    command = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    assert entry == ["headrace"]
    parses(command)
    assert any(line.startswith("HEALTHCHECK ") for line in lines)


def test_the_health_check_command_asks_a_running_server(tmp_path: Path) -> None:
    check = next(line for line in dockerfile() if line.startswith("HEALTHCHECK "))
    argv = json.loads(check[check.index("CMD ") + 4 :])
    assert argv[0] == "python"
    server = ServerProcess(tmp_path / "data").start()
    try:
        env = {**os.environ, "HEADRACE_HEALTH_PORT": str(server.port)}
        ok = subprocess.run([sys.executable, *argv[1:]], env=env, timeout=30)
        assert ok.returncode == 0
    finally:
        server.stop()
    env = {**os.environ, "HEADRACE_HEALTH_PORT": str(server.port)}  # nothing listens now
    down = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    assert down.returncode != 0


@pytest.mark.parametrize("unit", ["headrace-ingest.service", "headrace-deliver.service"])
def test_the_systemd_units_run_headrace_commands_it_takes(unit: str) -> None:
    text = (ROOT / "deploy" / "systemd" / unit).read_text()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", text.replace("\\\n", " "), re.M)
    assert exec_start is not None
    argv = shlex.split(exec_start.group(1))
    assert argv[0].endswith("/headrace")
    parses(argv[1:])
    assert "User=headrace" in text and "Restart=always" in text


def test_a_command_headrace_does_not_take_is_caught() -> None:
    with pytest.raises(click.UsageError):
        parses(["deliver", "--no-such-option"])
