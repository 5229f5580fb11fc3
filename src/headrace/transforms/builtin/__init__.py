"""The built-in transforms that need no outside service: ``remap``, ``filter`` and ``dedupe``
(see ``apply``)."""

from __future__ import annotations

from headrace.registry import register
from headrace.transforms.builtin.config import DedupeConfig, FilterConfig, RemapConfig

_APPLY = "headrace.transforms.builtin.apply"
register("transform", "remap", config=RemapConfig, implementation=f"{_APPLY}:Remap")
register("transform", "filter", config=FilterConfig, implementation=f"{_APPLY}:Filter")
register("transform", "dedupe", config=DedupeConfig, implementation=f"{_APPLY}:Dedupe")
