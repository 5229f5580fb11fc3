"""One error tree: whether a retry can help is said by class, for sinks, loads and the buffer."""

from __future__ import annotations

from headrace.errors import (
    BufferFull,
    LoadError,
    PoolBusy,
    Terminal,
    TerminalLoadError,
    TerminalSinkError,
    Transient,
    TransientLoadError,
    TransientSinkError,
    is_transient,
)


def test_transient_and_terminal_are_said_once_by_class() -> None:
    transient = [TransientSinkError("x"), PoolBusy("x"), TransientLoadError("timeout", "x"),
                 BufferFull("x")]  # fmt: skip
    terminal = [TerminalSinkError("rejected", "x"), TerminalLoadError("not_found", "x")]
    assert all(is_transient(e) and not isinstance(e, Terminal) for e in transient)
    assert all(isinstance(e, Terminal) and not is_transient(e) for e in terminal)
    assert all(isinstance(e, Transient) for e in transient)
    assert [e.retriable for e in (TransientLoadError("a", "b"), TerminalLoadError("a", "b"))] == [
        True,
        False,
    ]
    assert all(isinstance(e, LoadError) for e in (TransientLoadError("a", "b"),
                                                  TerminalLoadError("a", "b")))  # fmt: skip
    assert not is_transient(ValueError("a bug is not worth retrying as such"))
