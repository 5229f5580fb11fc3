"""The exceptions headrace raises, in one place.

    HeadraceError
    ├── ConfigError              a pipeline file that cannot be used (carries every problem found)
    ├── RequestRejected          an HTTP request refused with a status and a machine-readable reason
    ├── BufferFull  (Transient)  the buffer cannot take more right now (answered 503 + Retry-After)
    ├── SinkError                a sink could not take a batch
    │   ├── TransientSinkError (Transient)  worth retrying (connection lost, disk full, 5xx)
    │   │   └── PoolBusy         every pooled connection is in use (a write holds them)
    │   └── TerminalSinkError (Terminal)    retrying cannot help; the records go to dead letters
    └── LoadError                a bulk load job could not go on (reason, job status)
        ├── TerminalLoadError (Terminal)    for good (a 404, a forbidden address, bad data)
        └── TransientLoadError (Transient)  a later attempt may succeed (a timeout, a 5xx)

``Transient`` and ``Terminal`` say once, for sinks and loads alike, whether retrying can help:
the runtime and the load worker decide by class (``is_transient``), never by message. Third-party
exceptions are translated at the boundary, by one mapping per driver (``headrace.drivers``), so
callers only ever handle these.
"""

from __future__ import annotations

from dataclasses import dataclass


class HeadraceError(Exception):
    """Base class of every error headrace raises on purpose."""


class Transient:
    """Mixed into errors after which a retry may succeed."""


class Terminal:
    """Mixed into errors that no retry fixes."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying what raised ``exc`` may help."""
    return isinstance(exc, Transient)


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a pipeline file: where it is and what is wrong."""

    path: str
    message: str
    line: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        elif self.line:
            where = f"line {self.line}: "
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class ConfigError(HeadraceError):
    """A pipeline file with one or more problems; ``problems`` lists all of them."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RequestRejected(HeadraceError):
    """An ingest request refused before anything was stored."""

    def __init__(self, status: int, reason: str, message: str, **detail: object) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.detail = detail
        super().__init__(f"{status} {reason}: {message}")


class BufferFull(HeadraceError, Transient):
    """The buffer is over its size limit or the disk is full; retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class BufferUnavailable(HeadraceError, Transient):
    """The buffer cannot be reached or used (a NATS server down, a stream set up wrongly); the
    message says what to look at and never holds a credential."""


class SinkError(HeadraceError):
    """A sink could not take a batch."""


class TransientSinkError(SinkError, Transient):
    """A failure that a retry may fix."""


class PoolBusy(TransientSinkError):
    """Every connection of a sink's pool is in use; the write that holds them reports itself."""


class TerminalSinkError(SinkError, Terminal):
    """A failure that no retry fixes; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class LoadError(HeadraceError):
    """A bulk load job could not go on: a ``TerminalLoadError`` or a ``TransientLoadError``.

    ``reason`` is a short machine-readable word (``forbidden_address``, ``not_found``,
    ``too_large``, ...); ``status`` is the job status it leads to (``failed`` or ``expired``).
    """

    def __init__(self, reason: str, message: str, *, status: str = "failed") -> None:
        self.reason = reason
        self.status = status
        super().__init__(message)

    @property
    def retriable(self) -> bool:
        """Whether a later attempt may succeed."""
        return is_transient(self)


class TerminalLoadError(LoadError, Terminal):
    """A bulk load job failed for good (a 404, a forbidden address, a file the table refuses)."""


class TransientLoadError(LoadError, Transient):
    """A bulk load job failed this time; a later attempt may succeed (a timeout, a 5xx, a lost
    connection, a warehouse that is down)."""
