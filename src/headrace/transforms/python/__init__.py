"""The ``python`` transform: your function (a Kinesis Firehose transformation, or one record at a
time) in a pool of worker processes (see ``function``)."""

from __future__ import annotations

from headrace.registry import register
from headrace.transforms.python.config import PythonConfig

register(
    "transform", "python", config=PythonConfig,
    implementation="headrace.transforms.python.function:PythonFunctionTransform",
    healthcheck="headrace.transforms.python.function:healthcheck",
)  # fmt: skip
