"""``headrace serve``: a supervisor, N ingest worker processes and one delivery process.

``headrace ingest`` and ``headrace deliver`` run one role each under the same supervisor: ingest
workers only (and the bulk-load workers, whose jobs are kept where their webhook arrived), or the
delivery process only (with ``/metrics``, ``/healthz`` and ``/readyz`` on a port of its own).

The supervisor takes an exclusive lock on the data directory for each role it runs, seals
segments left by writers that died, reserves the port and starts the children (spawned, so each
is a clean interpreter). Each ingest worker listens on the port with its own SO_REUSEPORT socket (the kernel
spreads connections evenly) and writes its own buffer segment. The delivery
process owns the sinks. A child that dies is restarted; repeated early deaths stop the server.
On SIGTERM or SIGINT the ingest workers stop first (finishing in-flight requests, so nothing
acknowledged is missing), then the delivery process drains its batches.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from headrace.buffer import open_buffer
from headrace.config.models import Pipeline
from headrace.errors import HeadraceError
from headrace.retry import RetryPolicy
from headrace.server.roles import DELIVER, INGEST, ROLES
from headrace.telemetry import metrics as m
from headrace.telemetry.logs import setup_logging

log = logging.getLogger("headrace.serve")
RESTART_WINDOW = 30.0
DELIVERY_NICENESS = 10
MAX_EARLY_DEATHS = 5
RESTART_RETRY = RetryPolicy(initial=0.2, maximum=2.0, jitter="none")
"""The wait before a dead child is started again, longer with each recent death."""


class DataDirBusy(HeadraceError):
    """Another headrace process runs the same role on the data directory."""


def lock_data_dir(data_dir: Path, role: str) -> int:
    """Hold the data directory for ``role`` in this process; raises ``DataDirBusy`` if another
    process has it. (Ingest on one process and delivery on another may share a directory: that
    is how a local buffer is split into ``headrace ingest`` and ``headrace deliver``.)"""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / f"{role}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise DataDirBusy(
            f"another headrace process (serve, ingest or deliver) already runs {role} on {data_dir}"
        ) from exc
    return fd


def _die_with_parent(supervisor: int) -> None:
    """Ask Linux to SIGTERM this child if the supervisor dies, so no orphan keeps serving."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the request above took effect
        raise SystemExit(0)


def ingest_main(
    pipeline: Pipeline,
    options: ServeOptions,
    slot: int,
    address: tuple[str, int],
    supervisor: int,
    workers: int,
) -> None:
    """Entry point of an ingest worker process."""
    import sys

    import uvicorn

    from headrace.server.app import WorkerApp
    from headrace.server.http_protocol import protocol_class

    _die_with_parent(supervisor)
    setup_logging(**options.log_cfg)
    # The group-commit thread must get the GIL back soon after its fsync returns, or every
    # request waiting on that commit waits up to the default 5 ms switch interval too.
    sys.setswitchinterval(0.0002)
    sock = listen_socket(*address)
    app = WorkerApp(
        pipeline, options.data_dir, writer_name=f"w{slot}", noop_endpoint=options.noop_endpoint,
        workers=workers, listen_host=address[0], delivery_here=DELIVER in options.roles,
    )  # fmt: skip
    config = uvicorn.Config(
        app,
        loop="uvloop",
        # httptools with the server: section's limits (header sizes, deadlines for slow
        # clients, the keep-alive timeout, open connections), which uvicorn lacks
        http=protocol_class(pipeline.server, app.ingest.metrics),
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=30,
        backlog=4096,
    )
    uvicorn.Server(config).run(sockets=[sock])


def delivery_main(
    pipeline: Pipeline, options: ServeOptions, supervisor: int, sinks: list[str]
) -> None:
    """Entry point of the delivery process (delivering to ``sinks``, and running the bulk-load
    workers when the role is ingest's too)."""
    from headrace.loads.worker import start_load_workers
    from headrace.runtime.delivery_process import run_delivery

    _die_with_parent(supervisor)
    setup_logging(**options.log_cfg)
    # Under a burst, answering senders comes first: the buffer holds what delivery has not
    # reached yet, and delivery still gets every cycle ingest leaves idle.
    with contextlib.suppress(OSError):
        os.nice(DELIVERY_NICENESS)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    data_dir = options.data_dir
    name = "delivery" if DELIVER in options.roles else "loads"
    # One delivery process per data dir, ever: an orphan from a killed supervisor must have
    # drained and exited before this one reads the buffer.
    lock_fd = os.open(data_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if stop.wait(0.2):
                return
    loads = start_load_workers if INGEST in options.roles else None
    raise SystemExit(run_delivery(pipeline, data_dir, stop, loads, sinks=sinks, name=name))


@dataclass
class _Child:
    name: str
    start: Any
    process: BaseProcess | None = None
    deaths: list[float] = field(default_factory=list)


@dataclass
class ServeOptions:
    """How ``headrace serve`` (``ingest``, ``deliver``) runs."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 0
    noop_endpoint: bool = False
    log_cfg: dict[str, Any] = field(default_factory=dict)
    roles: frozenset[str] = ROLES
    """What this machine does: ingest (HTTP), deliver (sinks), or both."""
    sinks: tuple[str, ...] = ()
    """With the deliver role: only these sinks (none: every sink)."""
    metrics_address: tuple[str, int] | None = None
    """With the deliver role alone: where ``/metrics``, ``/healthz`` and ``/readyz`` answer."""


def _port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """Hold the port for the workers (bound, not listening: it takes no connections)."""
    # A plain bind first: with SO_REUSEPORT alone, a second server of the same user would
    # silently share the port instead of failing with "address in use".
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = int(probe.getsockname()[1])
    return _port_socket(host, port)


def listen_socket(host: str, port: int) -> socket.socket:
    """A worker's own listening socket on the shared port; the kernel spreads connections
    evenly over the workers' sockets (SO_REUSEPORT)."""
    sock = _port_socket(host, port)
    sock.listen(4096)
    return sock


def serve(pipeline: Pipeline, options: ServeOptions) -> int:
    """Run the roles of ``options`` until SIGTERM/SIGINT; returns the exit status."""
    from headrace.web.access import check_exposure

    ingesting = INGEST in options.roles
    if ingesting:
        check_exposure(pipeline, options.host)
    elif options.metrics_address is not None:
        check_exposure(pipeline, options.metrics_address[0], flag="--metrics-host")
    data_dir = options.data_dir
    locks = [lock_data_dir(data_dir, role) for role in sorted(options.roles)]
    run_dir = data_dir / "run"
    _clear_run_dir(run_dir, options.roles)
    # Writers that died left data a reader cannot take yet: recovery cuts torn tails (logged)
    startup_metrics = m.Registry()
    torn = open_buffer(pipeline.buffer, data_dir).recover()
    if torn:
        startup_metrics.add(m.key("headrace_buffer_torn_tails_total"), torn)
    m.write_snapshot(run_dir, _supervisor_name(options.roles), startup_metrics)
    ctx = multiprocessing.get_context("spawn")
    supervisor = os.getpid()
    ingest: list[_Child] = []
    sock: socket.socket | None = None
    if ingesting:
        sock = reserve_port(options.host, options.port)
        address = (options.host, int(sock.getsockname()[1]))
        workers = options.workers or os.cpu_count() or 1
        ingest = [
            _Child(f"ingest-{slot}", lambda slot=slot: ctx.Process(
                target=ingest_main, args=(pipeline, options, slot, address, supervisor, workers),
                name=f"headrace-ingest-{slot}",
            ))
            for slot in range(workers)
        ]  # fmt: skip
        log.info("headrace ingesting on http://%s:%d with %d worker(s); data in %s",
                 options.host, address[1], workers, data_dir)  # fmt: skip
    delivering = _delivery_child(ctx, pipeline, options, supervisor)
    if DELIVER in options.roles:
        log.info("headrace delivering to %s; data in %s", ", ".join(_sinks_of(pipeline, options)),
                 data_dir)  # fmt: skip
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    extras = _role_services(pipeline, options, run_dir)
    status = 0
    try:
        status = _supervise([*delivering, *ingest], stopping)
    finally:
        log.info("stopping: %s", "ingest workers first, then delivery drains" if ingest and delivering
                 else "ingest workers finish their requests" if ingest
                 else "delivery drains its batches")  # fmt: skip
        _stop(ingest, timeout=40)
        _stop(delivering, timeout=120)
        for service in extras:
            service.stop()
        if sock is not None:
            sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for fd in locks:
            os.close(fd)
    return status


def _sinks_of(pipeline: Pipeline, options: ServeOptions) -> list[str]:
    """The sinks this machine delivers to."""
    if DELIVER not in options.roles:
        return []
    return list(options.sinks) if options.sinks else list(pipeline.sinks)


def _delivery_child(
    ctx: Any, pipeline: Pipeline, options: ServeOptions, supervisor: int
) -> list[_Child]:
    """The delivery process, when this machine delivers or runs bulk loads (which run on the
    machine their webhook reached: their job history is kept there)."""
    sinks = _sinks_of(pipeline, options)
    loads = INGEST in options.roles and any(
        getattr(source, "type", None) == "bulk_export" for source in pipeline.sources.values()
    )
    if not sinks and not loads:
        return []
    name = "delivery" if DELIVER in options.roles else "loads"
    return [_Child(name, lambda: ctx.Process(
        target=delivery_main, args=(pipeline, options, supervisor, sinks),
        name=f"headrace-{name}",
    ))]  # fmt: skip


def _role_services(pipeline: Pipeline, options: ServeOptions, run_dir: Path) -> list[Any]:
    """What the supervisor itself serves beside its children: the dashboard's rate history on
    an ingest machine; the health and metrics port of a machine that only delivers."""
    from headrace.dashboard.history import HistoryRecorder

    services: list[Any] = []
    if INGEST in options.roles:
        services.append(HistoryRecorder(run_dir).start())  # the dashboard's last hour of rates
    elif options.metrics_address is not None:
        from headrace.server.delivery_http import DeliveryStatusServer
        from headrace.web.access import ReadAccess

        access = ReadAccess(pipeline, listen_host=options.metrics_address[0])
        services.append(DeliveryStatusServer(run_dir, options.metrics_address, access).start())
    return services


def _supervise(children: list[_Child], stopping: threading.Event) -> int:
    """Start ``children`` and restart one that dies, until ``stopping``; 1 when one keeps dying."""
    for child in children:
        _start(child)
    while not stopping.wait(0.2):
        for child in children:
            proc = child.process
            if proc is None or proc.is_alive():
                continue
            now = time.monotonic()
            child.deaths = [t for t in child.deaths if now - t < RESTART_WINDOW] + [now]
            log.error("%s exited with code %s; restarting it", child.name, proc.exitcode)
            if len(child.deaths) >= MAX_EARLY_DEATHS:
                log.critical("%s keeps dying; stopping the server", child.name)
                stopping.set()
                return 1
            time.sleep(RESTART_RETRY.delay(len(child.deaths)))
            _start(child)
    return 0


def _supervisor_name(roles: frozenset[str]) -> str:
    """The name the supervisor publishes its metrics under (one per role on a shared dir)."""
    return "supervisor" if roles == ROLES else "supervisor-" + "-".join(sorted(roles))


def _clear_run_dir(run_dir: Path, roles: frozenset[str]) -> None:
    """Forget what earlier runs of these roles published (metrics snapshots, delivery status);
    another role may be running on the same data directory and keeps its own."""
    if roles == ROLES:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    own = f"metrics-{_supervisor_name(roles)}."
    mine = (own, "metrics-w", "metrics-loads", "loads.json") if INGEST in roles \
        else (own, "metrics-delivery", "delivery.json")  # fmt: skip
    with contextlib.suppress(FileNotFoundError):
        for entry in run_dir.iterdir():
            if entry.name.startswith(mine):
                entry.unlink(missing_ok=True)


def _start(child: _Child) -> None:
    child.process = child.start()
    assert child.process is not None
    child.process.start()


def _stop(children: list[_Child], timeout: float) -> None:
    for child in children:
        if child.process is not None and child.process.is_alive() and child.process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        if child.process is None:
            continue
        child.process.join(max(0.0, deadline - time.monotonic()))
        if child.process.is_alive():
            log.error("%s did not stop in time; killing it", child.name)
            child.process.kill()
            child.process.join()
