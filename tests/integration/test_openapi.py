"""schemathesis against the server's own OpenAPI description: whatever it sends, no 5xx."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from support.serverproc import ServerProcess

PIPELINE = {
    "sources": {
        "clicks": {
            "type": "http",
            "auth": {"type": "token", "secrets": ["t0ken"]},
            "on_invalid": "keep_valid",
            "schema": {
                "type": "object",
                "properties": {
                    "requestid": {"type": "string"},
                    "action": {"enum": ["click", "view"]},
                    "n": {"type": "integer", "minimum": 0},
                },
                "required": ["requestid", "action"],
            },
        },
        "open": {"type": "http", "path": "/webhooks/{stream}"},
    },
    "sinks": {"lake": {"type": "lake", "inputs": ["clicks", "open"]}},
}


def test_schemathesis_finds_no_server_errors(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps(PIPELINE))
    server = ServerProcess(tmp_path / "data", config=config).start()
    try:
        document = httpx.get(f"{server.url}/openapi.json", timeout=5).json()
        assert "/v1/streams/clicks/events" in document["paths"]
        assert document["components"]["securitySchemes"]["clicks_token"]["name"] == "Authorization"
        read = document["paths"]["/v1/streams/clicks/events"]["get"]
        assert "unknown_stream" in read["responses"]["404"]["description"]
        never_stored = httpx.get(f"{server.url}/v1/streams/clicks/events", timeout=5)
        assert never_stored.status_code == 200  # the pipeline names it: known, empty
        unknown = httpx.get(f"{server.url}/v1/streams/nothing/events", timeout=5)
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_stream"
        st = Path(sys.executable).with_name("st")
        result = subprocess.run(
            [str(st), "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "30", "--request-timeout", "10", "-H", "Authorization: t0ken"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "Traceback" not in server.log()
    finally:
        assert server.stop() == 0
