"""Connecting to NATS as the ``buffer: {type: nats}`` settings say, and running the client for
callers that are threads (delivery), not coroutines.

The client is asyncio. Ingest workers use it in their own event loop; delivery threads and the
CLI go through a ``LoopThread``: one event loop in a daemon thread per process, with ``call``
running a coroutine there and waiting for its result (within a deadline). Errors of the client are
translated here, once (``problem_of``): what a person reading ``/readyz`` or a log line needs to
know, never a credential.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from headrace.config.buffers import NatsBuffer as NatsSettings

T = TypeVar("T")


def connect_options(settings: NatsSettings) -> dict[str, Any]:
    """The keyword arguments of ``nats.connect`` for ``settings`` (reconnecting for ever)."""
    options: dict[str, Any] = {
        "servers": list(settings.servers),
        "connect_timeout": settings.connect_timeout,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "name": "headrace",
    }
    if settings.token is not None:
        options["token"] = settings.token.get_secret_value()
    if settings.user is not None and settings.password is not None:
        options["user"] = settings.user
        options["password"] = settings.password.get_secret_value()
    if settings.creds_file is not None:
        options["user_credentials"] = settings.creds_file
    if settings.nkey_seed_file is not None:
        options["nkeys_seed"] = settings.nkey_seed_file
    if settings.tls is not None or any(s.startswith("tls://") for s in settings.servers):
        options["tls"] = _tls_context(settings)
    return options


def _tls_context(settings: NatsSettings) -> ssl.SSLContext:
    tls = settings.tls
    context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
    if tls is not None and tls.cert_file and tls.key_file:
        context.load_cert_chain(Path(tls.cert_file), Path(tls.key_file))
    return context


async def open_connection(settings: NatsSettings, **overrides: Any) -> Any:
    """A connected client (``nats.aio.client.Client``); ``overrides`` replace or add options
    (callbacks, ``allow_reconnect``); raises what ``nats.connect`` raises."""
    import nats

    return await nats.connect(**{**connect_options(settings), **overrides})


def problem_of(exc: BaseException, settings: NatsSettings) -> str:
    """A NATS client error as a sentence naming the servers and the setting to look at."""
    import nats.errors
    import nats.js.errors

    servers = ", ".join(settings.servers)
    if isinstance(exc, nats.errors.NoServersError | ConnectionRefusedError | OSError):
        return f"cannot reach NATS at {servers} ({type(exc).__name__}: {exc})"
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower():
        return (f"NATS at {servers} refused the credentials (buffer.token, buffer.user, "
                "buffer.creds_file or buffer.nkey_seed_file)")  # fmt: skip
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return (f"no JetStream stream takes {settings.subject_prefix}.> on {servers} "
                f"(buffer.stream {settings.stream}; is JetStream enabled?)")  # fmt: skip
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return f"JetStream at {servers} is unavailable (no quorum for buffer.stream {settings.stream}?)"
    if isinstance(exc, nats.js.errors.APIError):
        return f"JetStream refused: {exc.description or exc} (buffer.stream {settings.stream})"
    if isinstance(exc, asyncio.TimeoutError | nats.errors.TimeoutError):
        return f"NATS at {servers} did not answer in time"
    return f"NATS: {type(exc).__name__}: {exc}"


class LoopThread:
    """An event loop in a daemon thread, for callers that are threads (see the module docstring)."""

    def __init__(self, name: str = "nats") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` in the loop and wait for its result (``TimeoutError`` past
        ``timeout``: the coroutine is cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop (pending work is dropped: close clients first)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


__all__ = ["LoopThread", "connect_options", "open_connection", "problem_of"]
