"""The components a pipeline file can name, by kind and type: their config model, how to build
them, what they can do. One registry feeds the config unions, ``headrace validate`` (with
``--connect``), ``headrace docs`` and the runtime.

How a component registers (a sink here; transforms, authorizers and warehouses alike)::

    # headrace/sinks/mysink/__init__.py, or a third-party module
    from headrace.registry import register
    from headrace.sinks.base import APPEND

    register(
        "sink", "mysink",
        config=MySinkConfig,                       # a headrace.config.base.SinkConfig subclass
        implementation="mypkg.mysink.sink:MySink", # imported only when a pipeline uses it
        capabilities={APPEND},
        validate=check_config,                     # optional: pure, (config, context) -> problems
        resolve=absolute_paths,                    # optional: pure, (config, context) -> config
        healthcheck="mypkg.mysink.sink:reachable", # optional: connects, (config) -> problem | None
        embedded=None,                             # or what it keeps on one machine (see below)
    )

A component that keeps its data or state on the machine that runs it (files, a local database)
says so in ``embedded``: what it keeps there, and what to use instead. One process owns such a
component, so a pipeline whose buffer is shared by many machines (``buffer: {type: nats}``)
refuses it with that text.

Built-in components are the modules and packages directly under ``headrace.sinks``,
``headrace.transforms``, ``headrace.authorizers`` and ``headrace.loads.warehouses``: each is
imported once when the registry is first used, and those that call ``register`` are components
(the others are helpers, which keep their imports light). Third-party packages declare an entry
point in the group ``headrace.sinks`` (``headrace.transforms``, ``headrace.authorizers``,
``headrace.warehouses``) whose value is a module; importing it must register a component of that
kind named like the entry point. A plugin that fails to load is reported by ``validate`` when a
pipeline names its type, not when it does not.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

if TYPE_CHECKING:
    from headrace.config.base import Model

log = logging.getLogger("headrace.registry")

Kind = Literal["sink", "transform", "authorizer", "warehouse"]
KINDS: tuple[Kind, ...] = ("sink", "transform", "authorizer", "warehouse")
BUILTIN_PACKAGES: dict[Kind, str] = {
    "sink": "headrace.sinks",
    "transform": "headrace.transforms",
    "authorizer": "headrace.authorizers",
    "warehouse": "headrace.loads.warehouses",
}
ENTRY_POINT_GROUPS: dict[Kind, str] = {
    "sink": "headrace.sinks",
    "transform": "headrace.transforms",
    "authorizer": "headrace.authorizers",
    "warehouse": "headrace.warehouses",
}

PathKey = tuple[str | int, ...]
Problem = tuple[PathKey, str]
"""A problem a component's ``validate`` finds: the path below the component, and the message."""


@dataclass(frozen=True)
class ValidationContext:
    """What a component's pure ``validate`` may consult besides its own config."""

    component_id: str
    base_dir: str
    """Directory of the pipeline file (files a config names are relative to it)."""
    buffer: Any = None
    """The pipeline's buffer settings (``headrace.config.models.LocalBuffer``)."""


Validate = Callable[[Any, ValidationContext], list[Problem]]
Resolve = Callable[[Any, ValidationContext], Any]


@dataclass(frozen=True)
class Component:
    """One registered component type."""

    kind: Kind
    name: str
    config: type[Model]
    implementation: str
    """``module:attribute`` of what builds it (a class), imported on first use."""
    capabilities: frozenset[str] = frozenset()
    validate: Validate | None = None
    """Pure checks beyond the model's own (files it names, settings elsewhere in the file)."""
    resolve: Resolve | None = None
    """Pure rewriting once valid (a path relative to the pipeline file made absolute)."""
    healthcheck: str | None = None
    """``module:function`` taking the config and returning why it is unreachable, or ``None``."""
    origin: str = "headrace"
    """``headrace`` for built-ins, else the distribution that provides it."""
    embedded: str | None = None
    """What it keeps on the one machine that runs it and what to use instead, or ``None`` when
    it can be shared by processes on many machines."""

    def load(self) -> Any:
        """The implementation (a class taking the component's id and config, and so on)."""
        return _resolve(self.implementation)

    def check_health(self, config: Any) -> str | None:
        """Connect (without writing) and say what is unreachable; ``None`` when all is well."""
        if self.healthcheck is None:
            return None
        check: Callable[[Any], str | None] = _resolve(self.healthcheck)
        return check(config)


class UnknownComponent(LookupError):
    """No component of that kind has that name (or its plugin failed to load)."""

    def __init__(self, kind: str, name: str, known: Iterable[str], why: str | None = None) -> None:
        self.kind, self.name, self.why = kind, name, why
        listed = ", ".join(sorted(known)) or "none"
        message = why or f'unknown {kind} type "{name}" (available: {listed})'
        super().__init__(message)


@dataclass
class Registry:
    """Components by kind and name; see the module docstring."""

    components: dict[Kind, dict[str, Component]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    broken: dict[tuple[Kind, str], str] = field(default_factory=dict)
    """Plugins that failed to load: (kind, entry point name) → why."""

    def add(self, component: Component) -> None:
        known = self.components[component.kind].get(component.name)
        if known is not None and known != component:
            raise ValueError(
                f"{component.kind} type {component.name!r} is registered twice "
                f"({known.origin}: {known.implementation}; {component.origin}: "
                f"{component.implementation})"
            )
        self.components[component.kind][component.name] = component

    def get(self, kind: Kind, name: str) -> Component:
        """The component, or ``UnknownComponent`` saying what exists (or why a plugin broke)."""
        found = self.components[kind].get(name)
        if found is None:
            raise UnknownComponent(kind, name, self.components[kind], self.broken.get((kind, name)))
        return found

    def names(self, kind: Kind) -> list[str]:
        """The type names of ``kind``, sorted."""
        return sorted(self.components[kind])

    def configs(self, kind: Kind) -> dict[str, type[Model]]:
        """Type name → config model, for ``kind``."""
        return {name: c.config for name, c in sorted(self.components[kind].items())}

    def union(self, kind: Kind) -> Any:
        """The discriminated union (by ``type``) of the config models of ``kind``."""
        from pydantic import Field

        models = tuple(self.configs(kind).values())
        if not models:
            raise LookupError(f"no {kind} types are registered")
        if len(models) == 1:
            return models[0]
        return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at run time


_registry = Registry()
_lock = threading.RLock()
_loaded = False
_unions_in: list[type[Model]] = []  # models whose schemas hold component unions, in build order
_origin: str | None = None  # the distribution whose entry point is being loaded


def register(
    kind: Kind,
    name: str,
    *,
    config: type[Model],
    implementation: str,
    capabilities: Iterable[str] = (),
    validate: Validate | None = None,
    resolve: Resolve | None = None,
    healthcheck: str | None = None,
    embedded: str | None = None,
) -> None:
    """Register a component type (see the module docstring); called when its module is imported."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r} (kinds: {', '.join(KINDS)})")
    if ":" not in implementation:
        raise ValueError(f"implementation {implementation!r} must be 'module:attribute'")
    declared = config.model_fields.get("type")
    if declared is None:
        raise ValueError(f"{config.__name__} needs a 'type' field (Literal[{name!r}])")
    component = Component(
        kind, name, config, implementation, frozenset(capabilities), validate, resolve,
        healthcheck, _origin or "headrace", embedded,
    )  # fmt: skip
    with _lock:
        _registry.add(component)
        if _loaded:  # registered late (a module imported by hand): the unions must know it
            for model in _unions_in:
                model.model_rebuild(force=True)


def unregister(kind: Kind, name: str) -> None:
    """Forget a component type (for tests that register one of their own)."""
    with _lock:
        _registry.components[kind].pop(name, None)
        for model in _unions_in:
            model.model_rebuild(force=True)


def rebuild_on_registration(model: type[Model]) -> type[Model]:
    """Mark a model that uses ``ComponentUnion``: its schema is built again whenever a component
    registers after the registry was first loaded (used as a class decorator)."""
    _unions_in.append(model)
    return model


def components() -> Registry:
    """The registry, with the built-ins and the installed plugins loaded (once)."""
    global _loaded
    if _loaded:
        return _registry
    with _lock:
        if not _loaded:
            for package in BUILTIN_PACKAGES.values():
                _import_children(package)
            _load_entry_points()
            _loaded = True
    return _registry


def _import_children(package_name: str) -> None:
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")


def _load_entry_points() -> None:
    global _origin
    for kind, group in ENTRY_POINT_GROUPS.items():
        for entry in importlib.metadata.entry_points(group=group):
            dist = entry.dist.name if entry.dist is not None else entry.value
            _origin = dist
            try:
                importlib.import_module(entry.value.partition(":")[0])
                if entry.name not in _registry.components[kind]:
                    raise LookupError(
                        f"its module {entry.value} registers no {kind} named {entry.name!r}"
                    )
            except Exception as exc:
                why = f'the {kind} plugin "{entry.name}" from {dist} failed to load: {exc}'
                log.error("%s", why)
                _registry.broken[(kind, entry.name)] = why
            finally:
                _origin = None


def _resolve(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


class ComponentUnion:
    """Annotation that validates a field as one of the registered configs of ``kind`` (chosen by
    its ``type``). The union is built when the model's schema is, which models using it defer
    to their first validation (``defer_build``), after every component has registered."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return handler.generate_schema(components().union(self.kind))


__all__ = [
    "BUILTIN_PACKAGES",
    "ENTRY_POINT_GROUPS",
    "KINDS",
    "Component",
    "ComponentUnion",
    "Kind",
    "PathKey",
    "Problem",
    "Registry",
    "UnknownComponent",
    "ValidationContext",
    "components",
    "rebuild_on_registration",
    "register",
    "unregister",
]
