"""The python transform runs real functions in real worker processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace.transforms import TransformContext
from headrace.transforms.python.config import PythonConfig
from headrace.transforms.python.function import PythonFunctionTransform
from headrace.types import Event


def make(tmp_path: Path, **kw: Any) -> PythonFunctionTransform:
    config = PythonConfig.model_validate({"type": "python", "inputs": ["web"], **kw})
    transform = PythonFunctionTransform("fn", config)
    transform.open(TransformContext("sink", tmp_path / "state.db"))
    return transform


@pytest.fixture
def opened() -> Iterator[list[PythonFunctionTransform]]:
    made: list[PythonFunctionTransform] = []
    yield made
    for transform in made:
        transform.close()


def events(*datas: dict[str, Any]) -> list[Event]:
    return [
        Event(f"id{i}", "clicks", "web", 1_763_800_000_000_000 + i, d) for i, d in enumerate(datas)
    ]


def test_an_existing_firehose_function_runs_unchanged(tmp_path: Path, opened: list[Any]) -> None:
    transform = make(tmp_path, function="firehose_functions:lambda_handler")
    opened.append(transform)
    result = transform.apply(events({"callerid": "abc", "n": 1}, {"action": "heartbeat"},
                                    {"n": 3}, {"callerid": "x"}))  # fmt: skip
    assert [e.data for e in result.events] == [
        {"n": 1, "caller": "ABC", "remaining_ms_positive": True},
        {"caller": "X", "remaining_ms_positive": True},
    ]
    assert [e.id for e in result.events] == ["id0", "id3"]
    assert result.dropped == 1
    (failed,) = result.failed
    assert failed.event.id == "id2" and failed.reason == "transform_failed"


def test_timeouts_exceptions_and_missing_records_fail_only_their_records(
    tmp_path: Path, opened: list[Any]
) -> None:
    transform = make(tmp_path, function="firehose_functions:slow_on_request", timeout=1.5,
                     max_records=2, workers=2)  # fmt: skip
    opened.append(transform)
    batch = events({"n": 0}, {"n": 1, "sleep": 30}, {"n": 2}, {"n": 3, "forget": True},
                   {"n": 4, "boom": True}, {"n": 5})  # fmt: skip
    result = transform.apply(batch)
    reasons = {f.event.id: f.reason for f in result.failed}
    # invocations: [0, 1] times out, [2, 3] loses 3, [4, 5] raises
    assert reasons == {"id0": "transform_timeout", "id1": "transform_timeout",
                       "id3": "transform_missing_record", "id4": "transform_failed",
                       "id5": "transform_failed"}  # fmt: skip
    assert [e.id for e in result.events] == ["id2"]
    # the stuck worker was killed and replaced: the next batch runs
    again = transform.apply(events({"n": 9}, {"n": 10}))
    assert [e.data["n"] for e in again.events] == [9, 10]


def test_the_per_record_form(tmp_path: Path, opened: list[Any]) -> None:
    transform = make(tmp_path, function="firehose_functions:per_record", contract="record")
    opened.append(transform)
    result = transform.apply(events({"a": 1}, {"drop": True}, {"fail": True}))
    assert [e.data for e in result.events] == [{"a": 1, "seen": True}]
    assert result.dropped == 1
    assert result.failed[0].reason == "transform_failed"
    assert "cannot handle this one" in result.failed[0].error


def test_a_function_that_cannot_be_imported_is_reported_at_open(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no_such_module"):
        make(tmp_path, function="no_such_module:handler")


def test_a_slow_replacement_worker_never_answers_for_another_call(
    tmp_path: Path, opened: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import headrace.transforms.python.function as python_module

    flag = tmp_path / "slow"
    monkeypatch.setenv("HEADRACE_TEST_SLOW_START", str(flag))
    transform = make(tmp_path, function="slow_start_functions:tag", contract="record",
                     workers=1, timeout=1, inherit_env=["HEADRACE_TEST_SLOW_START"])  # fmt: skip
    opened.append(transform)
    hung = transform.apply(events({"n": 0, "hang": True}))
    assert [f.reason for f in hung.failed] == ["transform_timeout"]
    # the replacement worker now takes longer to start (3 s) than START_TIMEOUT allows
    flag.touch()
    monkeypatch.setattr(python_module, "START_TIMEOUT", 1.0)
    slow = transform.apply(events({"n": 1}))
    assert [f.reason for f in slow.failed] == ["transform_timeout"]
    assert "did not start" in slow.failed[0].error
    flag.unlink()
    monkeypatch.setattr(python_module, "START_TIMEOUT", 60.0)
    time.sleep(3.2)  # a worker left over from the failed start would have said "ready" by now
    for n in (2, 3, 4):
        (event,) = transform.apply(events({"n": n})).events
        assert event.data == {"n": n, "tag": f"from-{n}"}


def test_workers_get_only_the_environment_they_are_given(
    tmp_path: Path, opened: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://server")
    monkeypatch.setenv("SHARED_SETTING", "passed on")
    monkeypatch.setenv("LC_TIME", "C")
    transform = make(tmp_path, function="slow_start_functions:environment", contract="record",
                     env={"API_KEY": "for-the-function"}, inherit_env=["SHARED_SETTING"])  # fmt: skip
    opened.append(transform)
    (event,) = transform.apply(events({"n": 1})).events
    env = event.data["env"]
    assert "AWS_SECRET_ACCESS_KEY" not in env and "DATABASE_URL" not in env
    assert env["API_KEY"] == "for-the-function" and env["SHARED_SETTING"] == "passed on"
    assert env["LC_TIME"] == "C" and env["PATH"] == os.environ["PATH"]


APACHE = '10.0.0.7 - - [22/Nov/2026:10:00:01 +0000] "GET /pricing HTTP/1.1" 200 5120'


def test_data_that_is_not_one_json_object_is_kept_as_bytes(
    tmp_path: Path, opened: list[Any]
) -> None:
    transform = make(tmp_path, function="firehose_functions:apache_log_to_csv")
    opened.append(transform)
    result = transform.apply(events({"line": APACHE}, {"line": "not a log line"}))
    (csv_event,) = result.events
    assert csv_event.raw == b"10.0.0.7,22/Nov/2026:10:00:01 +0000,GET,/pricing,200,5120\n"
    assert csv_event.data == {} and csv_event.id == "id0"
    (failed,) = result.failed
    assert failed.reason == "transform_failed" and failed.processing is not None
    assert failed.processing.error_code == "Lambda.ProcessingFailed"
    assert failed.processing.lambda_arn.endswith(":function:fn")


def test_several_json_lines_in_one_record_are_several_events(
    tmp_path: Path, opened: list[Any]
) -> None:
    transform = make(tmp_path, function="firehose_functions:log_events_to_lines")
    opened.append(transform)
    logs = {"logEvents": [{"id": "a", "message": "up"}, {"id": "b", "message": "down"},
                          {"id": "c", "message": "up"}]}  # fmt: skip
    result = transform.apply(events(logs, {"logEvents": [{"id": "d", "message": "x"}]}))
    assert [(e.id, e.data["id"]) for e in result.events] == [
        ("id0", "a"), ("id0.1", "b"), ("id0.2", "c"), ("id1", "d")
    ]  # fmt: skip
    assert all(e.raw is None for e in result.events)


@pytest.mark.parametrize(
    ("payload", "raw"),
    [
        (b'{"a": 1}\n', False),
        (b'{"a": 1}\n{"a": 2}\n', False),
        (b"[1, 2]", True),  # JSON, but not an object: opaque, as Firehose sees it
        (b'"text"', True),
        (b'{"a": 1}\nnot json\n', True),
        (b"plain text", True),
        (b"", True),
    ],
)
def test_what_an_ok_record_becomes(payload: bytes, raw: bool) -> None:
    from headrace.transforms.python.function import events_of_output

    event = Event("e", "s", "web", 1, {"x": 1})
    made = events_of_output(event, payload)
    assert (made[0].raw is not None) is raw
    if raw:
        assert made == [event.with_raw(payload)]


def test_region_and_arns_come_from_the_config_else_the_aws_chain(
    tmp_path: Path, opened: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    transform = make(tmp_path, function="firehose_functions:where_am_i")
    opened.append(transform)
    (event,) = transform.apply(events({"n": 1})).events
    assert event.data["region"] == "local"
    assert event.data["stream"] == "arn:aws:firehose:local:000000000000:deliverystream/sink"

    (tmp_path / "aws-config").write_text("[default]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    transform = make(tmp_path, function="firehose_functions:where_am_i")
    opened.append(transform)
    (event,) = transform.apply(events({"n": 1})).events
    assert event.data["region"] == "eu-west-3"
    assert transform.lambda_arn == "arn:aws:lambda:eu-west-3:000000000000:function:fn"

    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    arn = "arn:aws:firehose:us-west-2:123456789012:deliverystream/clicks"
    transform = make(tmp_path, function="firehose_functions:where_am_i", region="us-west-2",
                     delivery_stream_arn=arn)  # fmt: skip
    opened.append(transform)
    (event,) = transform.apply(events({"n": 1})).events
    assert event.data == {"n": 1, "region": "us-west-2", "stream": arn}
