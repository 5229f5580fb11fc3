"""The ``python`` authorizer: your function decides (the Lambda-authorizer replacement); allows
are cached by an identity header for a while, denials never."""

from __future__ import annotations

import importlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import Field

from headrace.authorizers import AuthSetup, Principal, RequestFacts
from headrace.config.base import AuthorizerConfig, Seconds
from headrace.registry import register

log = logging.getLogger("headrace.ingest.auth")


class PythonAuth(AuthorizerConfig):
    """Your function decides (the Lambda-authorizer replacement). ``function`` is
    ``module:callable``, called with a dict (method, path, headers, query, client_ip) and
    returning ``True``/``False`` or ``{"allow": bool, "principal": str, "context": {...}}``;
    the principal and context can be copied into events with ``map``. Fails with 401."""

    type: Literal["python"]
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``module:callable``, importable by the server (e.g. ``myapp.auth:authorize``)."""
    cache_header: str | None = None
    """Header naming who is asking (e.g. ``Authorization``); an allow is cached for that value
    with the same method, path, client address and query. Use it only if no other header
    changes the answer. None: no cache. Denials are never cached."""
    cache_ttl: Seconds = 300.0
    """How long a cached result stands."""


class PythonCheck:
    """A user function decides; results are cached by an identity header for a while."""

    CACHE_SIZE = 10_000
    reads_all_headers = True

    def __init__(self, config: PythonAuth, setup: AuthSetup | None = None) -> None:
        module_name, _, attribute = config.function.partition(":")
        self.function: Callable[[dict[str, Any]], Any] = getattr(
            importlib.import_module(module_name), attribute
        )
        self.cache_header = config.cache_header.lower() if config.cache_header else None
        self.ttl = config.cache_ttl
        self._cache: OrderedDict[
            tuple[str, str, str, str | None, bytes], tuple[float, Principal]
        ] = OrderedDict()
        self.header_names = frozenset(
            {self.cache_header.encode("latin-1")} if self.cache_header else ()
        )

    def check(self, request: RequestFacts, now: float) -> Principal | str:
        """The principal (allowed), or why not."""
        identity = request.headers.get(self.cache_header) if self.cache_header else None
        # The function may decide on any input, so a cached answer stands only for the same
        # identity, method, path, client and query; denials are not cached (no lock-outs).
        cache_key = (
            None if identity is None
            else (identity, request.method, request.path, request.client, request.query)
        )  # fmt: skip
        clock = time.monotonic()
        if cache_key is not None:
            hit = self._cache.get(cache_key)
            if hit is not None and hit[0] > clock:
                self._cache.move_to_end(cache_key)
                return hit[1]
        query = dict(parse_qsl(request.query.decode("latin-1")))
        call = {"method": request.method, "path": request.path, "headers": dict(request.headers),
                "query": query, "client_ip": request.client}  # fmt: skip
        try:
            answer = self.function(call)
        except Exception:
            log.exception("the python authorizer raised; the request is refused")
            return "authorizer_error"
        principal = _principal_of(answer)
        if principal is None:
            return "denied"
        if cache_key is not None:
            self._cache[cache_key] = (clock + self.ttl, principal)
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal


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
