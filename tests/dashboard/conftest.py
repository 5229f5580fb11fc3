"""Servers for the dashboard tests: ``headrace serve`` as a subprocess, with a pipeline file."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.serverproc import ServerProcess


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """``check()``'s first truthy value; fails the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``headrace serve`` with an optional pipeline text; stopped after the test."""
    started: list[ServerProcess] = []

    def start(pipeline: str | None = None, *, ready: bool = True) -> ServerProcess:
        config = None
        if pipeline is not None:
            config = tmp_path / f"pipeline{len(started)}.yaml"
            config.write_text(pipeline)
        server = ServerProcess(tmp_path / f"data{len(started)}", config=config, workers=1)
        started.append(server.start())
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def write_lake(
    data_dir: Path,
    stream: str,
    events: list[tuple[int, dict[str, Any]]],
    *,
    sink_id: str = "lake",
    source: str = "events",
    batch: int = 20_000,
    **config: Any,
) -> None:
    """Store (receive time µs, data) events of ``stream`` through the real lake sink."""
    from headrace.sinks.lake.config import LakeConfig
    from headrace.sinks.lake.sink import LakeSink
    from headrace.storage import state
    from headrace.types import Event

    sink = LakeSink(sink_id, LakeConfig(type="lake", inputs=[source], **config), data_dir)
    sink.open()
    try:
        state.init_schema(sink._conn)  # type: ignore[arg-type]
        for start in range(0, len(events), batch):
            part = events[start : start + batch]
            batch_events = [
                Event(f"{stream}-{start + i:08d}", stream, source, t, d)
                for i, (t, d) in enumerate(part)
            ]
            result = sink.write(batch_events, state.Checkpoint(sink_id))
            assert not result.failed, result.failed[:3]
    finally:
        sink.close()


@contextlib.asynccontextmanager
async def app_client(
    data_dir: Path, pipeline: str | None = None, client: tuple[str, int] = ("127.0.0.1", 5000)
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process ingest app (dashboard included) over ``data_dir``, and a client for it."""
    from headrace.config.load import parse_pipeline
    from headrace.config.models import default_pipeline
    from headrace.server.app import WorkerApp

    app = WorkerApp(parse_pipeline(pipeline) if pipeline else default_pipeline(), data_dir)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http
    finally:
        await app.shutdown()


# -- the browser (Debian's Chromium, driven by Playwright; ``scripts/test`` installs it) --------

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
# Screenshots are kept after the run (CI can publish the folder): test-artifacts/ at the top of
# the checkout, or $HEADRACE_TEST_ARTIFACTS.
ARTIFACTS = Path(
    os.environ.get("HEADRACE_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


def artifact(name: str) -> str:
    """Where to keep the screenshot ``name``."""
    folder = ARTIFACTS / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: scripts/test installs it"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def console_allowed() -> list[str]:
    """Patterns of console errors a test causes on purpose (a 503 it answers itself, say)."""
    return []


@pytest.fixture
def browser_context(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options of the test's browser context; a test adds its own (``timezone_id``) with
    ``@pytest.mark.parametrize("browser_context", [{...}], indirect=True)``."""
    return {"viewport": {"width": 1400, "height": 1000}, **getattr(request, "param", {})}


@pytest.fixture
def page(
    browser: Any, console_allowed: list[str], browser_context: dict[str, Any]
) -> Iterator[Any]:
    """A tab; the test fails on any uncaught error or console error it did not allow."""
    context = browser.new_context(**browser_context)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    tab.on(
        "console",
        lambda m: (
            m.type in ("error", "assert") and errors.append(f"{m.type}: {m.text} {m.location}")
        ),
    )
    yield tab
    context.close()
    unexpected = [e for e in errors if not any(re.search(p, e) for p in console_allowed)]
    assert not unexpected, unexpected


def canvas_ink(page: Any, selector: str) -> int:
    """Non-blank pixels in the first canvas under ``selector``: the chart was drawn."""
    return int(
        page.eval_on_selector(
            f"{selector} canvas",
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                     let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""",
        )
    )


def show(page: Any, url: str, view: str) -> None:
    """Load ``url`` afresh and wait until the view has drawn its data."""
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_selector(f"body[data-ready={view}]")


def drawn(page: Any, view: str) -> None:
    """Wait for the view to draw again after a control changed it."""
    page.wait_for_selector(f"body[data-ready={view}]")


def legend(page: Any, selector: str) -> list[tuple[str, str]]:
    """(label, value) of each series in the chart's legend, x aside, in order."""
    rows = page.query_selector_all(f"{selector} .u-legend .u-series")[1:]
    return [(r.query_selector("th").inner_text().strip(), r.query_selector("td").inner_text())
            for r in rows]  # fmt: skip


def chart_facts(page: Any, selector: str) -> dict[str, Any]:
    """The y scale's bottom, the series' labels and colours of the chart under ``selector``."""
    return dict(
        page.evaluate(
            """sel => { const u = HR.chartIn(document.querySelector(sel));
                 return {ymin: u.scales.y.min, labels: u.series.slice(1).map(s => s.label),
                         colors: u.series.slice(1).map(s => s._stroke || s.stroke)}; }""",
            selector,
        )
    )
