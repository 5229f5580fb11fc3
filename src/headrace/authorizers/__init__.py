"""Authorizers of http sources: who may send, checked before anything is decoded or stored.

Every authorizer has one calling convention (``Authorizer``): it is built from its config and the
source it guards (``AuthSetup``), says which request headers it reads, and ``check`` returns the
``Principal`` that sent the request or the machine-readable reason it does not pass. A source
lists authorizers; ``SourceAuth.verify`` lets a request through if any of them passes and
otherwise answers 401 (403 when only an address check failed) listing each refusal.

Every comparison of a secret or a signature is constant-time (``hmac.compare_digest``),
signatures are computed over the raw body exactly as it arrived (before decompression), and
secrets never appear in errors or logs. Each authorizer type is a module of this package that
registers itself (see ``headrace.registry``); a third-party one comes through the
``headrace.authorizers`` entry point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from headrace.errors import RequestRejected
from headrace.registry import components

if TYPE_CHECKING:
    from headrace.config.base import AuthorizerConfig
    from headrace.storage.api_keys import ApiKey


@dataclass(frozen=True)
class RequestFacts:
    """What an authorizer may look at."""

    headers: dict[str, str]  # names in lower case
    body: bytes  # as sent
    client: str | None  # the peer's address
    query: bytes = b""  # the raw query string
    method: str = "POST"
    path: str = "/"


@dataclass(frozen=True)
class Principal:
    """Who sent a request, as an authorizer established it."""

    name: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    api_key: ApiKey | None = None
    delivery_id_header: str | None = None  # set only when a signature check passed


ANONYMOUS = Principal()
"""What an authorizer that only says yes or no (a token, an address) returns when it passes."""


@dataclass(frozen=True)
class AuthSetup:
    """The source an authorizer guards."""

    source_id: str
    data_dir: Path | None


class Authorizer(Protocol):
    """One authorizer of a source."""

    header_names: frozenset[bytes]
    """Request headers (lower case, latin-1) it reads; the request parser keeps only these."""
    reads_all_headers: bool
    """Whether it needs every header (a user function may look at any)."""

    def check(self, request: RequestFacts, now: float) -> Principal | str:
        """Who sent ``request`` (``ANONYMOUS`` if it cannot tell), or why it does not pass."""


class OffLoopAuthorizer(Authorizer, Protocol):
    """An authorizer whose check may block (it calls out, or runs user code): it also offers
    ``check_off_loop``, which the ingest path awaits so the event loop is never held. It may
    raise ``RequestRejected`` itself (503 ``authorizer_timeout`` past its deadline)."""

    async def check_off_loop(self, request: RequestFacts, now: float) -> Principal | str:
        """``check``, run off the event loop."""


class SourceAuth:
    """The authorizers of one source; ``verify`` raises ``RequestRejected`` unless one passes."""

    def __init__(self, source: Any, source_id: str = "", data_dir: Path | None = None) -> None:
        registry = components()
        setup = AuthSetup(source_id, data_dir)
        configs: list[AuthorizerConfig] = list(source.auth)
        self.checks: list[tuple[str, Authorizer]] = [
            (config.type, registry.get("authorizer", config.type).load()(config, setup))
            for config in configs
        ]
        self.header_names: frozenset[bytes] = frozenset().union(
            *(check.header_names for _, check in self.checks)
        )
        self.wants_all_headers = any(check.reads_all_headers for _, check in self.checks)
        self.delivery_id_header: str | None = next(
            (h for _, c in self.checks if (h := getattr(c, "delivery_id_header", None))), None
        )
        self.source_id = source_id
        self.blocks = any(hasattr(check, "check_off_loop") for _, check in self.checks)
        """Whether a check may block: the ingest path then uses ``verify_off_loop``."""

    def verify(
        self, request: RequestFacts, now: float, method: str = "POST", path: str = "/"
    ) -> Principal | None:
        """Pass (returning who sent it, when an authorizer knows), or raise 401/403 listing why
        each authorizer refused. Checks with a ``check_off_loop`` run on this thread."""
        request = _at(request, method, path)
        failures = []
        for kind, check in self.checks:
            verdict = check.check(request, now)
            if isinstance(verdict, Principal):
                return None if verdict is ANONYMOUS else verdict
            failures.append((kind, verdict))
        raise _refusal(failures)

    async def verify_off_loop(
        self, request: RequestFacts, now: float, method: str = "POST", path: str = "/"
    ) -> Principal | None:
        """``verify`` for the event loop: a check that may block (``OffLoopAuthorizer``) is
        awaited, so the loop serves other requests meanwhile."""
        request = _at(request, method, path)
        failures = []
        for kind, check in self.checks:
            off_loop = getattr(check, "check_off_loop", None)
            verdict = await off_loop(request, now) if off_loop else check.check(request, now)
            if isinstance(verdict, Principal):
                return None if verdict is ANONYMOUS else verdict
            failures.append((kind, verdict))
        raise _refusal(failures)


def _at(request: RequestFacts, method: str, path: str) -> RequestFacts:
    if (request.method, request.path) == (method, path):
        return request
    return RequestFacts(request.headers, request.body, request.client, request.query, method, path)


def _refusal(failures: list[tuple[str, str]]) -> RequestRejected:
    """401 (403 when only an address check failed) listing why each authorizer refused."""
    only_address = all(kind == "ip_allow" for kind, _ in failures)
    status = 403 if only_address else 401
    reason = failures[0][1] if len(failures) == 1 else "unauthorized"
    return RequestRejected(
        status, reason, "the request is not authorized",
        failed=[f"{kind}: {problem}" for kind, problem in failures],
    )  # fmt: skip


__all__ = [
    "ANONYMOUS", "AuthSetup", "Authorizer", "OffLoopAuthorizer", "Principal", "RequestFacts",
    "SourceAuth",
]  # fmt: skip
