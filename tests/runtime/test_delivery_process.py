"""The delivery process: every sink opens in its own worker, so one that cannot open (its store
unreachable, its transform's function missing) delays only itself and shows in the status."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgspec

from headrace.buffer.local.frames import encode_frame
from headrace.buffer.local.positions import load_positions
from headrace.buffer.local.segments import SegmentWriter
from headrace.buffer.records import FORMAT_ARRAY, BufferedRequest
from headrace.config.load import parse_pipeline
from headrace.ids import new_base_id
from headrace.runtime.delivery_process import run_delivery
from headrace.storage import state

PIPELINE = """
sources: {src: {type: http}}
transforms:
  fn: {type: python, inputs: [src], function: "headrace_no_such_module:handler"}
sinks:
  a_broken: {type: lake, inputs: [fn]}
  b_lake: {type: lake, inputs: [src]}
"""


def fill(buffer_dir: Path, events: list[dict[str, int]]) -> None:
    writer = SegmentWriter(buffer_dir, "w0", segment_bytes=1 << 20, segment_age=3600)
    writer.open()
    request = BufferedRequest(time.time_ns() // 1000, new_base_id().to_bytes(16, "big"), "s",
                              "src", len(events), FORMAT_ARRAY, msgspec.json.encode(events))  # fmt: skip
    writer.append([encode_frame(request)])
    writer.close()


def test_a_sink_that_cannot_open_does_not_hold_up_the_others(data_dir: Path) -> None:
    fill(data_dir / "buffer", [{"n": i} for i in range(5)])
    stop = threading.Event()
    status: list[int] = []
    thread = threading.Thread(
        target=lambda: status.append(run_delivery(parse_pipeline(PIPELINE, env={}), data_dir, stop))
    )
    thread.start()
    try:
        conn = state.connect(data_dir / "state.db")
        state.init_schema(conn)
        deadline = time.monotonic() + 15
        published: dict[str, object] = {}
        while time.monotonic() < deadline:
            delivered = load_positions(conn, "b_lake")[0]
            path = data_dir / "run" / "delivery.json"
            published = msgspec.json.decode(path.read_bytes()) if path.exists() else {}
            if delivered and published.get("unhealthy"):
                break
            time.sleep(0.1)
        assert load_positions(conn, "b_lake")[0], "b_lake never delivered"
        assert not load_positions(conn, "a_broken")[0]
        unhealthy = published["unhealthy"]
        assert isinstance(unhealthy, dict) and list(unhealthy) == ["a_broken"]
        assert "cannot open" in unhealthy["a_broken"]
        assert "headrace_no_such_module" in unhealthy["a_broken"]
    finally:
        stop.set()
        thread.join(30)
    assert status == [0]
