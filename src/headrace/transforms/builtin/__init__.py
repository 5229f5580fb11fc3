"""The built-in transforms that need no outside service: ``remap``, ``filter`` and ``dedupe``
(see ``apply``)."""

from __future__ import annotations

from headrace.registry import register
from headrace.transforms.builtin.config import DedupeConfig, FilterConfig, RemapConfig

_APPLY = "headrace.transforms.builtin.apply"
register("transform", "remap", config=RemapConfig, implementation=f"{_APPLY}:Remap")
register("transform", "filter", config=FilterConfig, implementation=f"{_APPLY}:Filter")
register(
    "transform", "dedupe", config=DedupeConfig, implementation=f"{_APPLY}:Dedupe",
    embedded="the ids it has seen in the state database of the machine that delivers, so the "
    "workers of other machines would not see them; give the source an id_field instead (a "
    "resent event keeps its id, and every sink stores an id once)",
)  # fmt: skip
