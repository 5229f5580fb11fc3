"""The package's shape, checked: no import cycle among modules at import time, and every import
points down the layers (a module uses only its own layer and those below it).

Layers, lowest first (``docs/architecture.md`` says what each holds); names in one tuple share a
layer and do not import each other's packages except as the exceptions below say."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "headrace"
LAYERS: list[tuple[str, ...]] = [
    ("(root)", "types", "errors", "ids", "keys", "retry", "awsconfig", "standard_webhooks",
     "registry", "telemetry", "drivers"),
    ("config",),
    ("storage",),
    ("buffer",),
    ("transforms",),
    ("sinks",),
    ("runtime",),
    ("web", "authorizers"),
    ("ingest", "loads", "query"),
    ("dashboard",),
    ("server", "recipes", "client", "healthchecks"),
    ("cli",),
]  # fmt: skip
# imports allowed across packages of one layer: (importer, imported)
SAME_LAYER = {("loads", "query"), ("ingest", "query"), ("authorizers", "web")}
RANK = {pkg: rank for rank, layer in enumerate(LAYERS) for pkg in layer}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "(root)"
    return parts[1]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at import time?) for each headrace import outside TYPE_CHECKING."""
    found: list[tuple[str, bool]] = []

    def visit(nodes: list[ast.stmt], at_import: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("headrace"):
                    found.append((node.module, at_import))
            elif isinstance(node, ast.Import):
                found.extend(
                    (a.name, at_import) for a in node.names if a.name.startswith("headrace")
                )
            inner = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if isinstance(block, list):
                    visit([n for n in block if isinstance(n, ast.stmt | ast.ExceptHandler)],
                          at_import and not inner)  # fmt: skip

    visit(ast.parse(path.read_text()).body, True)
    return found


def _graph() -> dict[str, list[tuple[str, bool]]]:
    return {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_no_module_level_import_cycle() -> None:
    graph = {m: [t for t, at_import in ts if at_import] for m, ts in _graph().items()}
    modules = set(graph)
    edges = {m: [t if t in modules else t.rsplit(".", 1)[0] for t in ts] for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in edges.get(module, []):
            if target not in modules or target == module:
                continue
            if state.get(target) == 1:
                cycles.append(
                    [*trail[trail.index(target) :], target] if target in trail else [module, target]
                )
            elif target not in state:
                walk(target, [*trail, target])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_every_import_points_down_the_layers() -> None:
    upward: dict[str, list[str]] = defaultdict(list)
    for module, targets in _graph().items():
        source = _package(module)
        for target, _at_import in targets:
            dest = _package(target)
            if (
                source == dest
                or (source, dest) in SAME_LAYER
                or RANK.get(source) == RANK.get(dest) == 0
            ):
                continue
            assert source in RANK and dest in RANK, f"{module} or {target}: no layer (add it)"
            if RANK[dest] >= RANK[source]:
                upward[module].append(target)
    assert dict(upward) == {}
