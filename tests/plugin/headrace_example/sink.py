"""``jsonl_file``: each event as one JSON line (``{"id": ..., **data}``) in a file, stored once
per event id.

The ids already stored are read back from the file when the sink opens, so a redelivered or
replayed event is recognised after a restart too; a line cut short by a crash is cut off then
(its event was not acknowledged, and comes again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from headrace.config.base import SinkConfig
from headrace.errors import TransientSinkError
from headrace.registry import register
from headrace.sinks.base import APPEND
from headrace.storage.state import Checkpoint
from headrace.types import Event, WriteResult


class JsonlFileConfig(SinkConfig):
    """Events as JSON lines in one file."""

    type: Literal["jsonl_file"]
    path: str
    """The file events are appended to."""


class JsonlFileSink:
    """See the module docstring."""

    capabilities = frozenset({APPEND})
    commits_checkpoint = False

    def __init__(self, sink_id: str, config: JsonlFileConfig, data_dir: Path) -> None:
        self.id = sink_id
        self.path = Path(config.path)
        self.stored: set[str] = set()
        self._error: str | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]  # a torn last line is dropped
        if len(whole) != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(len(whole))
        self.stored = {json.loads(line)["id"] for line in whole.splitlines()}

    def write(self, events: list[Event], checkpoint: Checkpoint) -> WriteResult:
        new = {e.id: e for e in events if e.id not in self.stored}  # once, even within a batch
        if not new:
            return WriteResult()
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.writelines(json.dumps({"id": e.id, **e.data}) + "\n" for e in new.values())
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            self._error = f"cannot write {self.path}: {exc}"
            raise TransientSinkError(self._error) from exc
        self.stored.update(new)
        self._error = None
        return WriteResult()

    def health(self) -> str | None:
        return self._error

    def maintain(self) -> None:
        pass

    def close(self) -> None:
        pass


register(
    "sink", "jsonl_file", config=JsonlFileConfig,
    implementation="headrace_example.sink:JsonlFileSink", capabilities={APPEND},
)  # fmt: skip
