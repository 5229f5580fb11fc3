"""``uppercase``: one field of each event in upper case."""

from __future__ import annotations

from typing import Literal

from headrace.config.base import TransformConfig
from headrace.registry import register
from headrace.transforms import TransformContext, TransformResult
from headrace.types import Event


class UppercaseConfig(TransformConfig):
    """Puts a text field in upper case."""

    type: Literal["uppercase"]
    field: str
    """The field to change (events without it pass unchanged)."""


class Uppercase:
    def __init__(self, transform_id: str, config: UppercaseConfig) -> None:
        self.id = transform_id
        self.field = config.field

    def open(self, context: TransformContext) -> None:
        pass

    def apply(self, events: list[Event]) -> TransformResult:
        out = []
        for event in events:
            value = event.data.get(self.field)
            if isinstance(value, str):
                event = event.with_data({**event.data, self.field: value.upper()})
            out.append(event)
        return TransformResult(out)

    def close(self) -> None:
        pass


register(
    "transform", "uppercase", config=UppercaseConfig,
    implementation="headrace_example.transform:Uppercase",
)  # fmt: skip
