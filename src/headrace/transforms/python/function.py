"""The ``python`` transform: your function, in a pool of worker processes, with a timeout.

A delivery batch is cut into invocations of ``max_records``; the pool runs them side by side.
With the Firehose contract each record is ``{"recordId", "approximateArrivalTimestamp",
"data": base64(JSON)}`` (or the bytes a transform before returned, see below) and the answer
must name every recordId once with a result of ``Ok``, ``Dropped`` or ``ProcessingFailed``.
An ``Ok`` record's data is opaque bytes, as in Firehose: one JSON object is the new event;
newline-delimited JSON objects are several events (the first keeps the record's event id, the
others get ``<id>.<n>``); anything else (CSV, text) is an event carrying the bytes as they are
(``Event.raw``), for sinks that write lines. Anything else fails only the records concerned: an
exception or a timeout fails its invocation's records (a timed-out worker is killed and
replaced, so one slow call cannot stall delivery), a missing or repeated recordId or data that is
not base64 fails that record. Each failure carries Firehose's error code and the function's ARN
(``ProcessingFailure``), for an s3 sink's ``processing-failed`` output.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
import queue
import select
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from headrace.awsconfig import configured_region
from headrace.transforms import TransformContext, TransformResult
from headrace.transforms.python.config import PythonConfig
from headrace.transforms.python.pyworker import frame
from headrace.types import Event, FailedRecord, ProcessingFailure

log = logging.getLogger("headrace.transforms.python")
_encoder = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()
START_TIMEOUT = 60.0
# The worker runs from its file, not as ``-m headrace.transforms.pyworker``: importing it as
# part of the package would first import ``headrace.transforms`` and with it the config models
# (pydantic), more than half a second of start-up each time a worker is started or replaced.
_WORKER_FILE = Path(__file__).with_name("pyworker.py")
_RUN_WORKER = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


# Firehose's error codes for what failed an invocation, by headrace's reason
_INVOCATION_CODES = {"transform_timeout": "Lambda.FunctionTimedOut"}


class WorkerFailed(Exception):
    """A worker timed out, died, or answered with something that is not a frame."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


# what a Python process needs to run normally; the rest of the server's environment (tokens,
# cloud keys, database URLs) is not the function's business unless the config passes it on
_BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT")


def worker_env(config: PythonConfig) -> dict[str, str]:
    """The environment of the transform's worker processes (without ``PYTHONPATH``)."""
    names = [*_BASE_ENV, *(n for n in os.environ if n.startswith("LC_")), *config.inherit_env]
    env = {name: os.environ[name] for name in names if name in os.environ}
    env.update(config.env)
    return env


class _Worker:
    """One worker process; used by one thread at a time."""

    def __init__(self, spec: str, env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.sequence = 0  # of the last call; the worker echoes it with the answer

    def start(self) -> None:
        env = dict(self.env)
        # the server's import path, so the function imports in the worker as it would here
        env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *[p for p in sys.path if p]])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_WORKER, str(_WORKER_FILE), self.spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.sequence = 0
        try:
            answer = self._read(time.monotonic() + START_TIMEOUT)
        except WorkerFailed as exc:
            # a worker left running after a failed start would later hand its late "ready"
            # frame to a call as that call's answer
            self.kill()
            raise WorkerFailed(exc.reason, f"the worker did not start: {exc}") from exc
        except BaseException:
            self.kill()
            raise
        if "error" in answer:
            self.kill()
            raise ValueError(str(answer["error"]))

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
            self.proc = None

    def call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            if self.proc is None:
                self.start()
            deadline = time.monotonic() + timeout
            self.sequence += 1
            self._write(frame(_encoder.encode({**message, "seq": self.sequence})), deadline)
            answer = self._read(deadline)
            if answer.get("seq") != self.sequence:
                # never take another call's answer for this one's
                raise WorkerFailed(
                    "transform_crashed",
                    f"the worker answered call {answer.get('seq')!r}, not {self.sequence}",
                )
            assert self.proc is not None and self.proc.stdout is not None
            if select.select([self.proc.stdout.fileno()], [], [], 0)[0]:
                # more output than one frame (or the worker exiting): it is out of step with us
                log.warning("python transform worker wrote past its answer; replacing it")
                self.kill()
            return answer
        except WorkerFailed:
            self.kill()
            raise

    def _write(self, data: bytes, deadline: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerFailed(
                    "transform_timeout", "the function did not take its input in time"
                )
            _, writable, _ = select.select([], [fd], [], left)
            if writable:
                try:
                    written = os.write(fd, view[: 1 << 16])
                except BrokenPipeError as exc:
                    raise WorkerFailed("transform_crashed", "the worker process died") from exc
                view = view[written:]

    def _read(self, deadline: float) -> dict[str, Any]:
        """One frame; never reads past it."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        need = 4
        while len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerFailed("transform_timeout", "the function did not answer in time")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, min(need - len(buf), 1 << 20))
            if not chunk:
                code = self.proc.poll()
                raise WorkerFailed("transform_crashed", f"the worker process died (exit {code})")
            buf += chunk
            if need == 4 and len(buf) == 4:
                need = 4 + int.from_bytes(buf[:4], "big")
        try:
            answer = msgspec.msgpack.decode(bytes(buf[4:need]))
        except msgspec.DecodeError as exc:
            raise WorkerFailed(
                "transform_crashed", f"the worker's frame is garbled: {exc}"
            ) from exc
        if not isinstance(answer, dict):
            raise WorkerFailed(
                "transform_crashed", "the worker answered something that is not a frame"
            )
        return answer


class PythonFunctionTransform:
    """Runs a user function over batches; see the module docstring."""

    def __init__(self, transform_id: str, config: PythonConfig) -> None:
        self.id = transform_id
        self.config = config
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._pool: ThreadPoolExecutor | None = None
        self.region = config.region or configured_region() or "local"
        self._stream_arn = ""
        self.lambda_arn = config.lambda_arn or (
            f"arn:aws:lambda:{self.region}:000000000000:function:{transform_id}"
        )
        # a Firehose function takes any bytes as a record's data, including another's output
        self.takes_raw = config.contract == "firehose"

    def open(self, context: TransformContext) -> None:
        """Start the workers (one at once, to report an import error now)."""
        env = worker_env(self.config)
        first = _Worker(self.config.function, env)
        first.start()
        self._idle.put(first)
        for _ in range(self.config.workers - 1):
            self._idle.put(_Worker(self.config.function, env))  # started on first use
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix=f"fn-{self.id}")
        self._stream_arn = self.config.delivery_stream_arn or (
            f"arn:aws:firehose:{self.region}:000000000000:deliverystream/{context.sink_id}"
        )

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        while not self._idle.empty():
            self._idle.get_nowait().kill()

    def apply(self, events: list[Event]) -> TransformResult:
        """Run the function over ``events`` in invocations of ``max_records``."""
        assert self._pool is not None, "transform is not open"
        size = self.config.max_records
        chunks = [events[i : i + size] for i in range(0, len(events), size)]
        results = list(self._pool.map(self._invoke, chunks))
        out = TransformResult([])
        for part in results:
            out.events.extend(part.events)
            out.failed.extend(part.failed)
            out.dropped += part.dropped
        return out

    def _invoke(self, events: list[Event]) -> TransformResult:
        worker = self._idle.get()
        try:
            if self.config.contract == "record":
                message: dict[str, Any] = {"contract": "record", "items": [e.data for e in events]}
            else:
                message = self._firehose_request(events)
            answer = worker.call(message, self.config.timeout)
        except WorkerFailed as exc:  # while starting a replacement worker too
            log.warning("transform %s: %s (%d records failed)", self.id, exc, len(events))
            return TransformResult([], [self._failed(e, exc.reason, str(exc)) for e in events])
        except ValueError as exc:  # a replacement worker could not import the function
            raise RuntimeError(f"transform {self.id}: {exc}") from exc
        finally:
            self._idle.put(worker)
        if "error" in answer:
            error = str(answer["error"])
            return TransformResult([], [self._failed(e, "transform_failed", error) for e in events])
        if self.config.contract == "record":
            result = _record_results(events, answer["ok"])
        else:
            result = _firehose_results(events, answer["ok"])
        arn = self.lambda_arn
        result.failed = [
            dataclasses.replace(f, processing=ProcessingFailure(f.processing.error_code, arn))
            if f.processing is not None
            else f
            for f in result.failed
        ]
        return result

    def _failed(self, event: Event, reason: str, error: str) -> FailedRecord:
        """A record of a failed invocation (in Firehose's terms under the Firehose contract)."""
        if self.config.contract != "firehose":
            return FailedRecord(event, reason, error)
        code = _INVOCATION_CODES.get(reason, "Lambda.FunctionError")
        return FailedRecord(event, reason, error, ProcessingFailure(code, self.lambda_arn))

    def _firehose_request(self, events: list[Event]) -> dict[str, Any]:
        records = [
            {
                "recordId": _record_id(index, event),
                "approximateArrivalTimestamp": event.received_at_us // 1000,
                "data": base64.b64encode(
                    event.raw if event.raw is not None else _json.encode(event.data)
                ).decode(),
            }
            for index, event in enumerate(events)
        ]
        return {
            "contract": "firehose",
            "deadline": time.time() + self.config.timeout,
            "event": {
                "invocationId": str(uuid.uuid4()),
                "deliveryStreamArn": self._stream_arn,
                "region": self.region,
                "records": records,
            },
        }


def _record_id(index: int, event: Event) -> str:
    return f"{index:08d}-{event.id}"


def _record_results(events: list[Event], results: Any) -> TransformResult:
    out = TransformResult([])
    if not isinstance(results, list) or len(results) != len(events):
        error = "the worker's answer does not match the records"
        out.failed = [FailedRecord(e, "transform_failed", error) for e in events]
        return out
    for event, (status, value) in zip(events, results, strict=True):
        if status == "error":
            out.failed.append(FailedRecord(event, "transform_failed", str(value)))
        elif value is None:
            out.dropped += 1
        elif isinstance(value, dict):
            out.events.append(event.with_data(value))
        else:
            error = f"the function returned {type(value).__name__}, not a dict or None"
            out.failed.append(FailedRecord(event, "transform_bad_output", error))
    return out


def _firehose_results(events: list[Event], response: Any) -> TransformResult:
    out = TransformResult([])
    records = response.get("records") if isinstance(response, dict) else None
    if not isinstance(records, list):
        error = 'the function\'s answer has no "records" list'
        code = "Lambda.InvalidResponse"
        out.failed = [_fail(e, "transform_bad_output", code, error) for e in events]
        return out
    wanted = {_record_id(i, e): e for i, e in enumerate(events)}
    answered, repeated = _answered(records, wanted)
    for record_id, event in wanted.items():
        record = answered.get(record_id)
        if record is None:
            out.failed.append(_fail(event, "transform_missing_record", "Lambda.MissingRecordId",
                                    f"recordId {record_id} is missing from the answer"))  # fmt: skip
        elif record_id in repeated:
            out.failed.append(_fail(event, "transform_bad_output", "Lambda.DuplicatedRecordId",
                                    f"recordId {record_id} is answered more than once"))  # fmt: skip
        elif (result := record.get("result")) == "Dropped":
            out.dropped += 1
        elif result == "ProcessingFailed":
            out.failed.append(_fail(event, "transform_failed", "Lambda.ProcessingFailed",
                                    "the function returned ProcessingFailed"))  # fmt: skip
        elif result == "Ok":
            try:
                payload = base64.b64decode(record.get("data") or "", validate=True)
            except (binascii.Error, TypeError, ValueError) as exc:
                out.failed.append(_fail(event, "transform_bad_output", "Lambda.InvalidRecordData",
                                        f"data is not base64: {exc}"))  # fmt: skip
                continue
            out.events.extend(events_of_output(event, payload))
        else:
            out.failed.append(_fail(event, "transform_bad_output", "Lambda.InvalidResult",
                                    f"result {result!r} is not Ok, Dropped or ProcessingFailed"))  # fmt: skip
    return out


def _fail(event: Event, reason: str, code: str, error: str) -> FailedRecord:
    """A record the function's answer failed (the transform adds its ARN)."""
    return FailedRecord(event, reason, error, ProcessingFailure(code, ""))


def _answered(
    records: list[Any], wanted: dict[str, Event]
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The answer's records by recordId, and the recordIds answered more than once."""
    answered: dict[str, dict[str, Any]] = {}
    repeated: set[str] = set()
    unknown = 0
    for record in records:
        record_id = record.get("recordId") if isinstance(record, dict) else None
        if not isinstance(record_id, str) or record_id not in wanted:
            unknown += 1
        elif record_id in answered:
            repeated.add(record_id)
        else:
            answered[record_id] = record
    if unknown:
        log.warning("transform answered %d record(s) with an unknown recordId", unknown)
    return answered, repeated


def events_of_output(event: Event, payload: bytes) -> list[Event]:
    """The events an ``Ok`` record's data makes: one JSON object is the event; newline-delimited
    JSON objects are one event each (ids ``<id>``, ``<id>.1``, ``<id>.2``...); any other bytes are
    one event carrying them as they are."""
    try:
        data = _json_decoder.decode(payload)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        return [event.with_data(data)]
    lines = [line for line in payload.split(b"\n") if line.strip(b" \t\r")]
    if data is None and len(lines) > 1:
        try:
            items = [_json_decoder.decode(line) for line in lines]
        except msgspec.DecodeError:
            items = []
        if items and all(isinstance(item, dict) for item in items):
            return [
                msgspec.structs.replace(
                    event.with_data(item), id=f"{event.id}.{n}" if n else event.id
                )
                for n, item in enumerate(items)
            ]
    return [event.with_raw(payload)]


def healthcheck(config: PythonConfig) -> str | None:
    """Whether the function imports in a worker process (started and stopped again)."""
    worker = _Worker(config.function, worker_env(config))
    try:
        worker.start()
    except (WorkerFailed, ValueError) as exc:
        return str(exc)
    finally:
        worker.kill()
    return None


__all__ = ["PythonFunctionTransform"]
