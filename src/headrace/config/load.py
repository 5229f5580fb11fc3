"""Reading a pipeline file: YAML with line numbers, ``${ENV}`` interpolation, typed models, and the
checks that span components (inputs that exist, paths that do not collide). Every problem is
collected and reported at once with its path in the file; nothing here touches the network.

Transforms and sinks (and the authorizers and warehouses inside sources) are looked up by type in
the registry: each is validated by its own model, then by its own ``validate`` hook, and its
``write_mode`` against the capabilities it registered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from headrace.config.base import NAME_PATTERN, Limits, Model
from headrace.config.buffers import LocalBuffer, NatsBuffer
from headrace.config.bulk import BulkExportSource
from headrace.config.graph import graph_problems
from headrace.config.models import SOURCE_TYPES, ApiSettings, Pipeline
from headrace.config.server import ServerSettings
from headrace.config.sources import HttpSource
from headrace.errors import ConfigError, ConfigProblem
from headrace.registry import Kind, UnknownComponent, ValidationContext, components

PathKey = tuple[str | int, ...]
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOP_LEVEL = {"sources", "transforms", "sinks", "buffer", "limits", "api", "server"}


def format_path(path: PathKey) -> str:
    """``("sinks", "lake", "inputs", 0)`` → ``sinks.lake.inputs[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Problems:
    def __init__(self, file: str | None, lines: dict[PathKey, int]) -> None:
        self.file = file
        self.lines = lines
        self.items: list[ConfigProblem] = []

    def add(self, path: PathKey, message: str) -> None:
        line = None
        for cut in range(len(path), -1, -1):  # the nearest enclosing node that has a line
            if path[:cut] in self.lines:
                line = self.lines[path[:cut]]
                break
        self.items.append(ConfigProblem(format_path(path), message, line, self.file))


def _read_yaml(text: str, problems: _Problems) -> Any:
    """The document's data, or ``None`` (with a problem recorded) if it is not usable YAML."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text[: exc.position].count("\n") + 1
        problems.items.append(
            ConfigProblem("", f"not valid YAML: {exc.reason}", line, problems.file)
        )
        return None
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        if not _record_lines(node, (), problems, set()):
            return None
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        problems.items.append(
            ConfigProblem(
                "", f"not valid YAML: {exc.problem}", mark.line + 1 if mark else None, problems.file
            )
        )
        return None
    except yaml.YAMLError as exc:
        problems.items.append(ConfigProblem("", f"not valid YAML: {exc}", None, problems.file))
        return None
    finally:
        loader.dispose()


def _record_lines(node: yaml.Node, path: PathKey, problems: _Problems, enclosing: set[int]) -> bool:
    """Map each path to its line; ``False`` if an alias refers to a node that encloses it."""
    if id(node) in enclosing:
        problems.add(path, "an alias refers to a mapping or list that contains it")
        return False
    problems.lines[path] = node.start_mark.line + 1
    inner = enclosing | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.lines[(*path, key)] = key_node.start_mark.line + 1
                problems.add((*path, key), "key appears twice")
            seen.add(key)
            if not _record_lines(value_node, (*path, key), problems, inner):
                return False
            problems.lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            if not _record_lines(item, (*path, index), problems, inner):
                return False
    return True


def _interpolate(value: Any, path: PathKey, env: Mapping[str, str], problems: _Problems) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if default is not None and not value:  # as in a shell: unset or empty takes the default
                return default
            if value is not None:
                return value
            problems.add(path, f"environment variable {name} is not set")
            return ""

        return _ENV.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, str(k)), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), env, problems) for i, v in enumerate(value)]
    return value


def _describe_pydantic_error(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        if len(err["loc"]) > 1:  # inside a nested model, whose keys are not ``model``'s
            return "unknown key (see `headrace docs` for the keys)"
        known = ", ".join(sorted(model.model_fields))
        return f"unknown key (known keys: {known})"
    if kind == "missing":
        return "required"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _union_tags() -> frozenset[str]:
    """Type names that pydantic puts in an error's location inside a component union."""
    registry = components()
    return frozenset((*registry.names("authorizer"), *registry.names("warehouse")))


def _validate_model(
    model: type[Model], data: Any, path: PathKey, problems: _Problems
) -> Model | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        tags = _union_tags()
        for err in exc.errors():
            # a tagged union names its tag in the location (auth.0.hmac.secrets): drop it
            loc = err["loc"]
            kept = tuple(
                p for i, p in enumerate(loc)
                if isinstance(p, str | int)
                and not (p in tags and i > 0 and (isinstance(loc[i - 1], int)
                                                  or loc[i - 1] == "warehouse"))
            )  # fmt: skip
            problems.add((*path, *kept), _describe_pydantic_error(err, model))
        return None


def _model_for(
    kind: Kind | None, type_name: str, path: PathKey, problems: _Problems
) -> type[Model] | None:
    """The model of a component's type, or ``None`` with a problem naming what exists."""
    if kind is None:
        model = SOURCE_TYPES.get(type_name)
        if model is None:
            available = ", ".join(sorted(SOURCE_TYPES))
            problems.add(
                (*path, "type"), f'unknown source type "{type_name}" (available: {available})'
            )
        return model
    try:
        return components().get(kind, type_name).config
    except UnknownComponent as exc:
        problems.add((*path, "type"), str(exc))
        return None


def _validate_components(
    section: str, data: Any, kind: Kind | None, problems: _Problems
) -> dict[str, Model]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.add((section,), f"must be a mapping of id to {section[:-1]}")
        return {}
    built: dict[str, Model] = {}
    for comp_id, body in data.items():
        comp_id = str(comp_id)
        path: PathKey = (section, comp_id)
        if not NAME_PATTERN.match(comp_id):
            problems.add(path, "ids use letters, digits, '_', '.' and '-' (at most 128)")
        if not isinstance(body, dict):
            problems.add(path, "must be a mapping with a type")
            continue
        type_name = body.get("type")
        if type_name is None:
            problems.add((*path, "type"), "required")
            continue
        model = _model_for(kind, str(type_name), path, problems)
        if model is None:
            continue
        component = _validate_model(model, body, path, problems)
        if component is not None:
            built[comp_id] = component
    return built


_WRITE_MODES = ("append", "merge", "replace")


def _component_checks(
    section: str,
    kind: Kind,
    built: dict[str, Model],
    context: ValidationContext,
    problems: _Problems,
) -> dict[str, Model]:
    """Each component's own ``validate`` hook and registered capabilities; returns the
    components as their ``resolve`` hooks rewrite them."""
    out: dict[str, Model] = {}
    for comp_id, config in built.items():
        component = components().get(kind, str(getattr(config, "type", "")))
        here = ValidationContext(comp_id, context.base_dir, context.buffer)
        path: PathKey = (section, comp_id)
        mode = getattr(config, "write_mode", None)
        if mode is not None and mode not in component.capabilities:
            can = ", ".join(sorted(c for c in component.capabilities if c in _WRITE_MODES))
            problems.add(
                (*path, "write_mode"),
                f"a {component.name} sink cannot {mode} (it can: {can or 'none of them'})",
            )
        if component.embedded and getattr(context.buffer, "shared", False):
            problems.add(
                (*path, "type"), _one_owner(component.kind, component.name, component.embedded)
            )
        if component.validate is not None:
            for where, message in component.validate(config, here):
                problems.add((*path, *where), message)
        out[comp_id] = component.resolve(config, here) if component.resolve else config
    return out


def _one_owner(kind: str, name: str, embedded: str) -> str:
    """Why a component one machine owns cannot be used with a shared buffer."""
    return (f"a {name} {kind} cannot be used with buffer type nats, where ingest and delivery "
            f"run on many machines: it keeps {embedded}")  # fmt: skip


def _check_shared_warehouses(
    sources: dict[str, Model], buffer: Model | None, problems: _Problems
) -> None:
    """Bulk loads into a warehouse one machine owns are refused with a shared buffer."""
    if not getattr(buffer, "shared", False):
        return
    for source_id, source in sources.items():
        warehouse = getattr(source, "warehouse", None)
        if warehouse is None:
            continue
        component = components().get("warehouse", str(warehouse.type))
        if component.embedded:
            problems.add(("sources", source_id, "warehouse", "type"),
                         _one_owner("warehouse", component.name, component.embedded))  # fmt: skip


BUFFER_TYPES: dict[str, type[Model]] = {"local": LocalBuffer, "nats": NatsBuffer}


def _validate_buffer(data: Any, problems: _Problems) -> Model | None:
    """The ``buffer:`` section, by its ``type`` (``local`` when none is given)."""
    body = data if data is not None else {}
    kind = body.get("type", "local") if isinstance(body, dict) else None
    model = BUFFER_TYPES.get(str(kind)) if kind is not None else LocalBuffer
    if model is None:
        known = ", ".join(BUFFER_TYPES)
        problems.add(("buffer", "type"), f'unknown buffer type "{kind}" (available: {known})')
        return None
    return _validate_model(model, body, ("buffer",), problems)


def _as_mapping(data: Any) -> dict[str, Any]:
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


def _inputs_of(body: Any) -> list[Any]:
    inputs = body.get("inputs") if isinstance(body, dict) else None
    return inputs if isinstance(inputs, list) else []


def _type_of(body: Any) -> Any:
    return body.get("type") if isinstance(body, dict) else None


def _check_graph(raw: dict[str, Any], sources: dict[str, Model], problems: _Problems) -> None:
    """Checks across components, on the raw mappings so broken components are checked too."""
    raw_sources = _as_mapping(raw.get("sources"))
    raw_transforms = _as_mapping(raw.get("transforms"))
    producers = set(raw_sources) | set(raw_transforms)
    consumed: set[str] = set()
    for section in ("transforms", "sinks"):
        for comp_id, body in _as_mapping(raw.get(section)).items():
            for index, name in enumerate(_inputs_of(body)):
                consumed.add(str(name))
                if str(name) not in producers:
                    problems.add(
                        (section, comp_id, "inputs", index),
                        f'no source or transform named "{name}"',
                    )
                elif _type_of(raw_sources.get(str(name))) == "bulk_export":
                    problems.add(
                        (section, comp_id, "inputs", index),
                        f'"{name}" is a bulk_export source: it loads tables itself, no events '
                        "reach sinks or transforms",
                    )
    for source_id, body in raw_sources.items():
        if source_id not in consumed and _type_of(body) != "bulk_export":
            problems.add(
                ("sources", source_id),
                "is not an input of any sink, so its events would be stored and never delivered",
            )

    for path, message in graph_problems(raw):
        problems.add(path, message)
    seen_paths: dict[str, str] = {}
    for source_id, source in sources.items():
        if isinstance(source, HttpSource | BulkExportSource) and source.path:
            key = source.path.rstrip("/") or "/"
            if key in seen_paths:
                problems.add(
                    ("sources", source_id, "path"),
                    f'"{source.path}" is already the path of source "{seen_paths[key]}"',
                )
            seen_paths[key] = source_id


def _resolve_schema(source_id: str, source: Model, file: str | None, problems: _Problems) -> Model:
    """Read a schema file (relative to the pipeline file) and check the schema is valid."""
    if isinstance(source, BulkExportSource):
        return source.with_base(Path(file).parent if file else Path.cwd())
    if not isinstance(source, HttpSource) or source.json_schema is None:
        return source
    path: PathKey = ("sources", source_id, "schema")
    schema = source.json_schema
    if isinstance(schema, str):
        base = Path(file).parent if file else Path.cwd()
        schema_file = base / schema
        try:
            schema = yaml.safe_load(schema_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            problems.add(path, f"cannot read the schema file {schema_file}: {exc}")
            return source
        if not isinstance(schema, dict):
            problems.add(path, f"{schema_file} does not hold a JSON Schema object")
            return source
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        problems.add(
            path, f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
        )
        return source
    return source.model_copy(update={"json_schema": schema})


def parse_pipeline(
    text: str, *, file: str | None = None, env: Mapping[str, str] | None = None
) -> Pipeline:
    """Build a ``Pipeline`` from YAML text, or raise ``ConfigError`` listing every problem."""
    problems = _Problems(file, {})
    raw = _read_yaml(text, problems)
    if raw is None:  # not YAML: nothing more can be checked
        raise ConfigError(problems.items)
    if not isinstance(raw, dict):
        raise ConfigError([ConfigProblem("", "the pipeline file must be a mapping", 1, file)])
    raw = _interpolate(raw, (), os.environ if env is None else env, problems)
    for key in raw:
        if key not in _TOP_LEVEL:
            problems.add((str(key),), f"unknown key (known keys: {', '.join(sorted(_TOP_LEVEL))})")
    if not raw.get("sources"):
        problems.add(("sources",), "at least one is required")
    bulk_only = all(  # bulk_export sources load tables themselves: no sink needed
        _type_of(body) == "bulk_export" for body in _as_mapping(raw.get("sources")).values()
    )
    if not raw.get("sinks") and not (raw.get("sources") and bulk_only):
        problems.add(("sinks",), "at least one is required")
    sources = _validate_components("sources", raw.get("sources"), None, problems)
    transforms = _validate_components("transforms", raw.get("transforms"), "transform", problems)
    sinks = _validate_components("sinks", raw.get("sinks"), "sink", problems)
    buffer = _validate_buffer(raw.get("buffer"), problems)
    limits = _validate_model(Limits, raw.get("limits") or {}, ("limits",), problems)
    api = _validate_model(ApiSettings, raw.get("api") or {}, ("api",), problems)
    server = _validate_model(ServerSettings, raw.get("server") or {}, ("server",), problems)
    _check_graph(raw, sources, problems)
    _check_shared_warehouses(sources, buffer, problems)
    base_dir = str(Path(file).parent if file else Path.cwd())
    context = ValidationContext("", base_dir, buffer or LocalBuffer())
    sources = {sid: _resolve_schema(sid, src, file, problems) for sid, src in sources.items()}
    transforms = _component_checks("transforms", "transform", transforms, context, problems)
    sinks = _component_checks("sinks", "sink", sinks, context, problems)
    if problems.items:
        raise ConfigError(problems.items)
    pipeline = Pipeline.model_validate(
        {
            "sources": sources,
            "transforms": transforms,
            "sinks": sinks,
            "buffer": buffer,
            "limits": limits,
            "api": api,
            "server": server,
        }
    )
    _check_reads(pipeline, problems)
    if problems.items:
        raise ConfigError(problems.items)
    return pipeline


def _check_reads(pipeline: Pipeline, problems: _Problems) -> None:
    """A source's ``read.sink`` must be a sink that can be read back (a lake, a dynamodb table
    with a sort key: GET reads a time range) and that stores the source's events."""
    for source_id, source in pipeline.sources.items():
        if not isinstance(source, HttpSource) or source.read is None or source.read.sink is None:
            continue
        path: PathKey = ("sources", source_id, "read", "sink")
        wanted = source.read.sink
        sink = pipeline.sinks.get(wanted)
        if sink is None:
            problems.add(path, f'no sink named "{wanted}"')
        elif "read" not in components().get("sink", sink.type).capabilities:
            problems.add(
                path, f'"{wanted}" is a {sink.type} sink; GET reads a lake or dynamodb sink'
            )
        elif sink.type == "dynamodb" and getattr(sink, "sort_key", None) is None:
            problems.add(
                path, f'"{wanted}" has no sort_key: GET reads a time range, by the sort key'
            )
        elif wanted not in pipeline.sinks_for_source(source_id):
            problems.add(path, f'"{wanted}" does not store the events of "{source_id}"')


def load_pipeline(path: str | Path, env: Mapping[str, str] | None = None) -> Pipeline:
    """Read and check the pipeline file at ``path``."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read: {exc.strerror}", None, file)]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem("", "not UTF-8 text", None, file)]) from exc
    return parse_pipeline(text, file=file, env=env)
