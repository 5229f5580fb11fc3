"""A test hook: the order in which requests were committed and acknowledged.

With ``HEADRACE_TEST_ORDER_LOG=<path>`` in the environment when headrace starts, the buffer
writers append ``committed <batch id>`` once a request's fsync (local) or PubAck (nats) has
returned, and ingest appends ``ack <batch id>`` just before it sends the 2xx (the batch id is the
request's 16-byte base id, in hex). ``tests/reliability/test_commit_before_ack.py`` checks that
every ack follows its commit. Unset (always, outside that test), it costs one flag test.

Each line is one ``write`` to a file opened with ``O_APPEND``, so lines from every worker
process land whole, in the order they were written.
"""

from __future__ import annotations

import os

PATH = os.environ.get("HEADRACE_TEST_ORDER_LOG")  # read once, at import
ORDER_LOG = PATH is not None  # whether the hook is on
_fd: int | None = None


def note_order(what: str, batch_id: bytes) -> None:
    """Append ``<pid> <what> <batch id>`` to the order log (only called when ``ORDER_LOG``)."""
    global _fd
    assert PATH is not None
    if _fd is None:
        _fd = os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(_fd, f"{os.getpid()} {what} {batch_id.hex()}\n".encode())


__all__ = ["ORDER_LOG", "note_order"]
