"""The ``python`` authorizer: your function decides (the Lambda-authorizer replacement); allows
are cached by an identity header for a while, denials never.

The function may block (a directory lookup, a database), so it never runs on the event loop:
``check_off_loop`` hands it to a small thread pool of its own (``concurrency`` threads) and
waits at most ``timeout``, queueing included. Past that the request is refused with 503
``authorizer_timeout`` and ``Retry-After`` (fail closed: a slow directory lets nobody in, and
the sender is told to come back rather than that it is unauthorized). A call that overran
keeps its thread until it returns (Python cannot stop a thread) and its answer is dropped; a
call still queued when its deadline passes never runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import Field

from headrace.authorizers import AuthSetup, Principal, RequestFacts
from headrace.config.base import AuthorizerConfig, Seconds
from headrace.errors import RequestRejected
from headrace.registry import register

log = logging.getLogger("headrace.ingest.auth")
CacheKey = tuple[str, str, str, str | None, bytes]


class PythonAuth(AuthorizerConfig):
    """Your function decides (the Lambda-authorizer replacement). ``function`` is
    ``module:callable``, called with a dict (method, path, headers, query, client_ip) and
    returning ``True``/``False`` or ``{"allow": bool, "principal": str, "context": {...}}``;
    the principal and context can be copied into events with ``map``. Fails with 401; with 503
    ``authorizer_timeout`` when the function does not answer within ``timeout``. It runs in a
    thread pool, never on the event loop, so it may block."""

    type: Literal["python"]
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``module:callable``, importable by the server (e.g. ``myapp.auth:authorize``)."""
    cache_header: str | None = None
    """Header naming who is asking (e.g. ``Authorization``); an allow is cached for that value
    with the same method, path, client address and query. Use it only if no other header
    changes the answer. None: no cache. Denials are never cached."""
    cache_ttl: Seconds = 300.0
    """How long a cached result stands."""
    timeout: Seconds = Field(default=1.0, gt=0)
    """How long the function may take, waiting for a free thread included; past it the request
    is refused with 503 ``authorizer_timeout`` and ``Retry-After`` (counted in
    ``headrace_authorizer_timeouts_total``)."""
    concurrency: int = Field(default=8, ge=1, le=256)
    """Calls of the function running at once in each ingest worker (its thread pool)."""


class PythonCheck:
    """A user function decides; results are cached by an identity header for a while."""

    CACHE_SIZE = 10_000
    reads_all_headers = True

    def __init__(self, config: PythonAuth, setup: AuthSetup | None = None) -> None:
        module_name, _, attribute = config.function.partition(":")
        self.name = config.function
        self.function: Callable[[dict[str, Any]], Any] = getattr(
            importlib.import_module(module_name), attribute
        )
        self.cache_header = config.cache_header.lower() if config.cache_header else None
        self.ttl = config.cache_ttl
        self.timeout = config.timeout
        self._cache: OrderedDict[CacheKey, tuple[float, Principal]] = OrderedDict()
        self._pool = _Calls(config.concurrency)
        self._log_lock = threading.Lock()
        self._quiet_until = 0.0
        self.header_names = frozenset(
            {self.cache_header.encode("latin-1")} if self.cache_header else ()
        )

    def check(self, request: RequestFacts, now: float) -> Principal | str:
        """The principal (allowed), or why not; waits for the function on this thread (callers
        off the event loop, such as the bulk-load webhook). Raises 503 past the deadline."""
        cache_key, call = self._prepare(request)
        if isinstance(call, Principal):
            return call
        future = self._pool.submit(self.function, call)
        try:
            answer = future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise self._timed_out() from None
        except Exception:
            return self._raised()
        return self._decided(cache_key, answer)

    async def check_off_loop(self, request: RequestFacts, now: float) -> Principal | str:
        """``check`` for the event loop: the function runs in the pool while the loop serves
        other requests. Raises 503 ``authorizer_timeout`` past the deadline."""
        cache_key, call = self._prepare(request)
        if isinstance(call, Principal):
            return call
        # cancelling the wrapper on timeout cancels the pool's future: unstarted, it never runs
        pending = asyncio.wrap_future(self._pool.submit(self.function, call))
        try:
            answer = await asyncio.wait_for(pending, self.timeout)
        except TimeoutError:
            raise self._timed_out() from None
        except Exception:
            return self._raised()
        return self._decided(cache_key, answer)

    def _prepare(self, request: RequestFacts) -> tuple[CacheKey | None, Principal | dict[str, Any]]:
        """The request's cache key, and the function's argument or the cached allow."""
        identity = request.headers.get(self.cache_header) if self.cache_header else None
        # The function may decide on any input, so a cached answer stands only for the same
        # identity, method, path, client and query; denials are not cached (no lock-outs).
        cache_key = (
            None if identity is None
            else (identity, request.method, request.path, request.client, request.query)
        )  # fmt: skip
        if cache_key is not None:
            hit = self._cache.get(cache_key)
            if hit is not None and hit[0] > time.monotonic():
                self._cache.move_to_end(cache_key)
                return cache_key, hit[1]
        query = dict(parse_qsl(request.query.decode("latin-1")))
        call = {"method": request.method, "path": request.path, "headers": dict(request.headers),
                "query": query, "client_ip": request.client}  # fmt: skip
        return cache_key, call

    def _decided(self, cache_key: CacheKey | None, answer: Any) -> Principal | str:
        principal = _principal_of(answer)
        if principal is None:
            return "denied"
        if cache_key is not None:
            self._cache[cache_key] = (time.monotonic() + self.ttl, principal)
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal

    def _raised(self) -> str:
        log.exception("the python authorizer raised; the request is refused")
        return "authorizer_error"

    def _timed_out(self) -> RequestRejected:
        now = time.monotonic()
        with self._log_lock:  # one line a minute: a hung directory would flood the log
            if now >= self._quiet_until:
                self._quiet_until = now + 60.0
                log.warning("the python authorizer %s took longer than %gs; requests are "
                            "refused with 503 (headrace_authorizer_timeouts_total counts them)",
                            self.name, self.timeout)  # fmt: skip
        return RequestRejected(
            503, "authorizer_timeout",
            f"the authorizer did not answer within {self.timeout:g}s; nothing was stored",
            retry_after=1,
        )  # fmt: skip


class _Calls:
    """At most ``size`` calls of the function at once, on daemon threads started as needed:
    a ``ThreadPoolExecutor``'s threads are joined when the process exits, so one hung call
    would hold up the worker's shutdown until it is killed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.queue: queue.SimpleQueue[tuple[Future[Any], Callable[[Any], Any], Any]] = (
            queue.SimpleQueue()
        )
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def submit(self, function: Callable[[Any], Any], argument: Any) -> Future[Any]:
        """``function(argument)`` on a thread of the pool; cancel the future to skip it."""
        future: Future[Any] = Future()
        self.queue.put((future, function, argument))
        if len(self.threads) < self.size:
            with self.lock:
                if len(self.threads) < self.size:
                    thread = threading.Thread(target=self._run, name="python-authorizer",
                                              daemon=True)  # fmt: skip
                    self.threads.append(thread)
                    thread.start()
        return future

    def _run(self) -> None:
        while True:
            future, function, argument = self.queue.get()
            if not future.set_running_or_notify_cancel():
                continue  # its deadline passed while it waited
            try:
                future.set_result(function(argument))
            except BaseException as exc:
                future.set_exception(exc)


def _principal_of(answer: Any) -> Principal | None:
    if answer is True:
        return Principal(None, {})
    if isinstance(answer, dict) and answer.get("allow") is True:
        context = answer.get("context")
        name = answer.get("principal")
        return Principal(
            str(name) if name is not None else None, context if isinstance(context, dict) else {}
        )
    return None


def healthcheck(config: PythonAuth) -> str | None:
    """Whether the function imports (the server imports it the same way when it starts)."""
    module_name, _, attribute = config.function.partition(":")
    try:
        getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:
        return f"cannot load {config.function}: {type(exc).__name__}: {exc}"
    return None


register(
    "authorizer", "python", config=PythonAuth,
    implementation="headrace.authorizers.python:PythonCheck",
    healthcheck="headrace.authorizers.python:healthcheck",
)  # fmt: skip
