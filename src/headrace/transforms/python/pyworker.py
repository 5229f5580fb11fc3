"""The worker process of a ``python`` transform: imports the function once, then answers calls.

Protocol on stdin/stdout: frames of a 4-byte big-endian length and a msgpack payload.
The first frame out is ``{"ready": true}`` or ``{"error": "..."}`` (the import failed).
Then each frame in is ``{"contract": "firehose", "event": {...}, "deadline": <epoch s>}`` or
``{"contract": "record", "items": [...]}``, answered with ``{"ok": <the function's answer>}``
(for ``record``: a list of ``["ok", value]`` / ``["error", text]``) or ``{"error": "..."}``.
Each call carries a ``seq`` number that its answer repeats, so the server can never take one
call's answer for another's.

The function's own prints go to stderr, so they cannot corrupt the protocol. This module
imports nothing of headrace, so a worker starts fast.
"""

from __future__ import annotations

import importlib
import inspect
import os
import struct
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any, BinaryIO

import msgspec

_LENGTH = struct.Struct(">I")


class LambdaContext:
    """What a Lambda handler gets as ``context`` (the parts a transformation function uses)."""

    def __init__(self, name: str, deadline: float) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{name}"
        self.memory_limit_in_mb = 0
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/headrace/{name}"
        self.log_stream_name = "headrace"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the call times out."""
        return max(0, int((self._deadline - time.time()) * 1000))


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame's payload, or ``None`` at the end of the stream."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    (length,) = _LENGTH.unpack(header)
    payload = stream.read(length)
    return payload if len(payload) == length else None


def frame(payload: bytes) -> bytes:
    """``payload`` with its length in front."""
    return _LENGTH.pack(len(payload)) + payload


def load(spec: str) -> Callable[..., Any]:
    """The callable named ``module:attribute``."""
    module_name, _, attribute = spec.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{spec} is not callable")
    return function  # type: ignore[no-any-return]


def _takes_context(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def _answer(function: Callable[..., Any], name: str, with_context: bool, message: Any) -> Any:
    if message.get("contract") == "record":
        results: list[list[Any]] = []
        for item in message["items"]:
            try:
                results.append(["ok", function(item)])
            except Exception as exc:
                results.append(["error", f"{type(exc).__name__}: {exc}"])
        return {"ok": results}
    event = message["event"]
    if with_context:
        return {"ok": function(event, LambdaContext(name, message["deadline"]))}
    return {"ok": function(event)}


def main() -> int:
    """Serve calls until stdin closes."""
    spec = sys.argv[1]
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the function's prints go to stderr
    sys.stdout = sys.stderr
    encoder = msgspec.msgpack.Encoder()
    try:
        function = load(spec)
    except BaseException as exc:
        out.write(
            frame(encoder.encode({"error": f"cannot load {spec}: {type(exc).__name__}: {exc}"}))
        )
        out.flush()
        return 1
    with_context = _takes_context(function)
    name = spec.replace(":", ".")
    out.write(frame(encoder.encode({"ready": True})))
    out.flush()
    stdin = sys.stdin.buffer
    while True:
        payload = read_frame(stdin)
        if payload is None:
            return 0
        seq = None
        try:
            message = msgspec.msgpack.decode(payload)
            seq = message.get("seq")
            answer = _answer(function, name, with_context, message)
            encoded = encoder.encode({**answer, "seq": seq})
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            encoded = encoder.encode({"error": detail, "seq": seq})
        out.write(frame(encoded))
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
