"""``docs``: the pipeline file's components and their keys, plugins included."""

from __future__ import annotations

from typing import Any

import click

_DOC_KINDS = {"transforms": "transform", "sinks": "sink", "authorizers": "authorizer",
              "warehouses": "warehouse"}  # fmt: skip


@click.command()
@click.argument(
    "kind",
    type=click.Choice(["sources", *_DOC_KINDS, "pipeline"]),
    default="pipeline",
)
@click.argument("type_name", required=False)
def docs(kind: str, type_name: str | None) -> None:
    """Print the documentation of pipeline-file components and their keys.

    KIND is sources, transforms, sinks, authorizers, warehouses or pipeline; TYPE_NAME picks one
    type (``headrace docs sinks postgres``). Components installed by plugins are listed too.
    """
    from headrace.config import buffers, models
    from headrace.config.base import Limits
    from headrace.config.server import ServerSettings
    from headrace.registry import components

    registry = components()
    found: dict[str, Any]
    if kind in _DOC_KINDS:
        found = {name: c for name, c in registry.components[_DOC_KINDS[kind]].items()}  # type: ignore[index]
    elif kind == "sources":
        found = dict(models.SOURCE_TYPES)
    else:
        found = {"pipeline": models.Pipeline, "buffer": buffers.LocalBuffer,
                 "buffer-nats": buffers.NatsBuffer, "limits": Limits,
                 "server": ServerSettings}  # fmt: skip
    names = [type_name] if type_name else sorted(found)
    for name in names:
        entry = found.get(name)
        if entry is None:
            raise click.UsageError(
                f'no {kind[:-1] if kind != "pipeline" else kind} type "{name}" '
                f"(available: {', '.join(sorted(found))})"
            )
        model = getattr(entry, "config", entry)
        origin = getattr(entry, "origin", "headrace")
        suffix = "" if origin == "headrace" else f"   [plugin: {origin}]"
        click.echo(f"{name}: {(model.__doc__ or '').strip()}{suffix}")
        capabilities = sorted(getattr(entry, "capabilities", ()))
        if capabilities:
            click.echo(f"  can: {', '.join(capabilities)}")
        embedded = getattr(entry, "embedded", None)
        if embedded:
            click.echo(f"  one machine only (not with buffer type nats): keeps {embedded}")
        _describe_fields(model, "  ")
        click.echo()


def _describe_fields(model: Any, indent: str) -> None:
    from pydantic import BaseModel

    for field_name, info in model.model_fields.items():
        nested = info.annotation if isinstance(info.annotation, type) else None
        is_model = nested is not None and issubclass(nested, BaseModel)
        default = ""
        if not info.is_required() and not is_model:
            default = f" (default: {info.get_default(call_default_factory=True)!r})"
        click.echo(f"{indent}{info.alias or field_name}{default}")
        for line in (info.description or "").splitlines():
            click.echo(f"{indent}    {line.strip()}")
        if is_model:
            _describe_fields(nested, indent + "    ")
