"""The ``python`` transform's config: your function, its contract, workers and environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headrace.config.base import Seconds, TransformConfig


class PythonConfig(TransformConfig):
    """Your function changes records. With ``contract: firehose`` it is an unchanged Kinesis
    Firehose data-transformation function: called with ``{"records": [{"recordId",
    "approximateArrivalTimestamp", "data": <base64 JSON>}]}`` (and a context object if it takes
    two arguments), it returns ``{"records": [{"recordId", "result": "Ok" | "Dropped" |
    "ProcessingFailed", "data": <base64>}]}``. As in Firehose, an ``Ok`` record's data is opaque
    bytes: one JSON object is the new event, several newline-delimited JSON objects become several
    events, and anything else (CSV, a line of text) goes as it is to sinks that write lines (s3
    ``ndjson``, the lake's ``_raw`` column) and is refused by sinks that need columns. With
    ``contract: record`` it takes one event (a dict) and returns the new dict, or ``None`` to drop
    it. Records that fail, time out or go missing from the answer go to the sink's dead-letter
    store with the reason (or to an s3 sink's ``processing-failed`` output, if it says so)."""

    type: Literal["python"]
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``module:callable``, importable by the server (e.g. ``clicks.transform:lambda_handler``)."""
    contract: Literal["firehose", "record"] = "firehose"
    """``firehose``: the Kinesis Firehose request/response; ``record``: ``dict -> dict | None``."""
    workers: int = Field(default=2, ge=1, le=64)
    """Worker processes running the function side by side."""
    timeout: Seconds = 60.0
    """Longest one invocation may run; past it the worker is killed and its records fail."""
    max_records: int = Field(default=500, ge=1, le=100_000)
    """Most records handed to one invocation (a delivery batch is split into several)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables set for the function (e.g. ``API_KEY: ${CLICKS_API_KEY}``). The
    workers do not get the server's environment (its tokens, keys and database URLs): only
    ``PATH``, locale and time zone settings, ``HOME``, ``TMPDIR``, the import path, these, and
    those named in ``inherit_env``."""
    inherit_env: list[str] = Field(default_factory=list)
    """Names of the server's environment variables passed on to the function as they are."""
    region: str | None = Field(default=None, min_length=1)
    """``region`` of the Firehose request (functions build AWS clients from it); none: the AWS
    configuration's (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's), else ``local``."""
    delivery_stream_arn: str | None = Field(default=None, min_length=1)
    """``deliveryStreamArn`` of the Firehose request; none:
    ``arn:aws:firehose:<region>:000000000000:deliverystream/<sink id>``."""
    lambda_arn: str | None = Field(default=None, min_length=1)
    """``lambdaArn`` of the records this function fails, in an s3 sink's ``processing-failed``
    output; none: ``arn:aws:lambda:<region>:000000000000:function:<transform id>``."""
