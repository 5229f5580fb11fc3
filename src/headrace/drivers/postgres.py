"""psycopg's exceptions, as headrace reads them.

- *connection* errors: after them a retry on a fresh connection may succeed (the server went
  away, a serialization failure or deadlock, a table that changed or vanished under us);
- *data* errors: the rows' own fault, which no retry fixes (a value the column refuses, a
  constraint, a key too long for its index, text Python cannot encode);
- everything else is terminal for what raised it.
"""

from __future__ import annotations

import functools


@functools.cache
def lost_connection_errors() -> tuple[type[Exception], ...]:
    """The exception classes of a server or connection that went away (or refused us)."""
    import psycopg

    return (psycopg.OperationalError, psycopg.InterfaceError)


@functools.cache
def connection_errors() -> tuple[type[Exception], ...]:
    """The exception classes after which a retry on a fresh connection may succeed: a lost
    connection, a serialization failure or deadlock, a table changed under a writer that makes
    its tables ready again on the retry."""
    import psycopg

    return (*lost_connection_errors(), psycopg.errors.SerializationFailure,
            psycopg.errors.DeadlockDetected, psycopg.errors.UndefinedColumn,
            psycopg.errors.UndefinedTable)  # fmt: skip


@functools.cache
def data_errors() -> tuple[type[Exception], ...]:
    """The exception classes that say the data is at fault."""
    import psycopg

    # ProgramLimitExceeded is an OperationalError, but it is a row's fault: a key too long for
    # its index (over ~2.7 kB), which no retry would ever store
    return (psycopg.errors.DataError, psycopg.errors.IntegrityError,
            psycopg.errors.InvalidTextRepresentation, psycopg.errors.ProgramLimitExceeded,
            UnicodeEncodeError)  # fmt: skip


__all__ = ["connection_errors", "data_errors", "lost_connection_errors"]
