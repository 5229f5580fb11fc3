"""A third-party package adds a sink, a transform and an authorizer through entry points: the
example plugin in tests/plugin is pip-installed into this venv, then used by ``headrace docs``,
``headrace validate`` and ``headrace serve`` like any built-in component."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.serverproc import ServerProcess

PLUGIN = Path(__file__).parent / "plugin"
PIPELINE = """\
sources:
  web:
    type: http
    auth: {type: query_token, secret: "s3cret"}
transforms:
  shout: {type: uppercase, inputs: [web], field: name}
sinks:
  out: {type: jsonl_file, inputs: [shout], path: "%s"}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headrace.cli", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    source = tmp_path_factory.mktemp("plugin") / "plugin"
    shutil.copytree(PLUGIN, source)  # building writes beside the sources: not in the checkout
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(source)],
                   check=True, timeout=300)  # fmt: skip
    try:
        yield
    finally:
        subprocess.run([*pip, "uninstall", "-y", "headrace-example-plugin"], check=True,
                       timeout=300)  # fmt: skip


def test_plugin_components_are_listed_and_documented(installed: None) -> None:
    listed = cli("docs", "sinks")
    assert listed.returncode == 0, listed.stderr
    assert "jsonl_file: Events as JSON lines in one file.   [plugin: headrace-example-plugin]" in (
        listed.stdout
    )
    assert "lake:" in listed.stdout  # the built-ins are still there
    one = cli("docs", "transforms", "uppercase")
    assert one.returncode == 0 and "field" in one.stdout and "upper case" in one.stdout
    assert "query_token" in cli("docs", "authorizers").stdout


def test_a_plugin_config_is_validated_by_its_own_model(installed: None, tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE % (tmp_path / "out.jsonl"))
    checked = cli("validate", str(config))
    assert checked.returncode == 0, checked.stderr + checked.stdout
    config.write_text((PIPELINE % (tmp_path / "out.jsonl")).replace("field: name", "feild: name"))
    refused = cli("validate", str(config))
    assert refused.returncode == 1
    assert "pipeline.yaml:6: transforms.shout.feild: unknown key" in refused.stderr
    assert "transforms.shout.field: required" in refused.stderr


def test_serve_runs_the_plugin_sink_transform_and_authorizer(
    installed: None, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(PIPELINE % out)
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, config=config).start()
    try:
        url = f"{server.url}/v1/streams/web/events"
        denied = httpx.post(url, params={"token": "wrong"}, json={"name": "ada"})
        assert denied.status_code == 401 and denied.json()["error"] == "invalid_token"
        sent = httpx.post(url, params={"token": "s3cret"}, json=[{"name": "ada"}, {"name": "bo"}])
        assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            out.exists() and len(out.read_text().splitlines()) == 2
        ):
            time.sleep(0.1)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["name"] for r in rows] == ["ADA", "BO"], server.log()
        assert [r["id"] for r in rows] == sent.json()["ids"]
    finally:
        assert server.stop() == 0
