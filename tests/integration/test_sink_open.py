"""A sink that cannot open (here: its transform's function does not import) delays only its own
delivery, and /readyz names it with the reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from support.serverproc import ServerProcess


def test_one_sink_that_cannot_open_does_not_stop_the_others(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("""
sources:
  web: {type: http}
transforms:
  fn: {type: python, inputs: [web], function: "headrace_no_such_module:handler"}
sinks:
  archive: {type: lake, inputs: [fn]}
  lake: {type: lake, inputs: [web]}
""")
    server = ServerProcess(tmp_path / "data", config=config).start()
    try:
        sent = [{"n": i} for i in range(10)]
        assert httpx.post(f"{server.url}/v1/streams/web/events", json=sent).status_code == 202
        deadline = time.monotonic() + 30
        delivered: Any = None
        while time.monotonic() < deadline:
            delivered = server.metrics().get('headrace_events_delivered_total{sink="lake"}')
            if delivered == 10:
                break
            time.sleep(0.2)
        assert delivered == 10, server.log()
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503
        problems = ready.json()["problems"]
        assert list(problems) == ["sinks.archive"]
        assert "cannot open" in problems["sinks.archive"]
        assert "headrace_no_such_module" in problems["sinks.archive"]
    finally:
        assert server.stop() == 0
