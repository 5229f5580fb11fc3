"""The reliability suite: each test drives a real headrace under load and faults, keeps a ledger
(acknowledged, stored, lost = acknowledged - stored, unexpected = stored - attempted, duplicate
rows at the sink) and records one row of the suite's table.

CI runs the quick scale (``./scripts/test``); ``./scripts/reliability`` runs the full scale
(``--reliability-full``) and prints the table docs/reliability.md keeps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

REPORT_ENV = "HEADRACE_RELIABILITY_REPORT"
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-full", action="store_true",
        help="run the reliability suite at full scale (./scripts/reliability)",
    )  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """How hard a reliability test pushes: ``quick(...)`` in CI, ``full(...)`` from
    ./scripts/reliability. ``pick(quick, full)`` chooses the figure for this run."""

    full: bool

    def pick(self, quick: T, full: T) -> T:
        return full if self.full else quick


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> Scale:
    return Scale(bool(request.config.getoption("--reliability-full")))


@dataclass
class Row:
    """One line of the suite's table."""

    test: str
    load: str
    faults: str
    acknowledged: int | None = None
    stored: int | None = None
    lost: int | None = None
    duplicates: int | None = None
    verdict: str = "pass"
    notes: dict[str, object] = field(default_factory=dict)


_ROWS: list[Row] = []


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[Callable[..., Row]]:
    """``record(load=..., faults=..., acknowledged=..., stored=..., lost=..., duplicates=...,
    **notes)`` adds this test's row to the table; call it before asserting, so a failing run
    still shows its figures. The verdict is "fail" when the test fails afterwards."""
    made: list[Row] = []

    def add(*, load: str, faults: str, test: str | None = None, **figures: object) -> Row:
        known = {k: figures.pop(k) for k in ("acknowledged", "stored", "lost", "duplicates")
                 if k in figures}  # fmt: skip
        row = Row(test or request.node.name, load, faults, **known, notes=figures)  # type: ignore[arg-type]
        made.append(row)
        return row

    yield add
    failed = getattr(request.node, "rep_call", None)
    for row in made:
        if failed is not None and failed.failed:
            row.verdict = "FAIL"
        _ROWS.append(row)
        path = os.environ.get(REPORT_ENV)
        if path:
            with Path(path).open("a") as out:
                out.write(json.dumps(asdict(row)) + "\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ROWS:
        return
    terminalreporter.section("reliability ledger")
    for line in table(_ROWS):
        terminalreporter.write_line(line)


def table(rows: list[Row]) -> list[str]:
    """The suite's table as Markdown lines."""
    head = ["test", "load", "faults injected", "acknowledged", "stored", "lost", "duplicates",
            "verdict", "figures"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.test, r.load, r.faults, *(_n(v) for v in (r.acknowledged, r.stored, r.lost,
                 r.duplicates)), r.verdict, _figures(r.notes)]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return out


def _figures(notes: dict[str, object]) -> str:
    """A row's other figures (p99, drain times, statements checked...), ``name value`` each."""
    shown = []
    for name, value in notes.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        shown.append(f"{name.replace('_', ' ')} {value}")
    return "; ".join(shown).replace("|", "/")


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
