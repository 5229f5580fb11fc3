"""What SQL headrace sent, and whether any of it was shaped other than intended.

PostgreSQL's own record: every connection the code under test opens (``psycopg.connect``,
wrapped while watching) gets ``log_statement=all`` as a startup option, for that session only, so
the shared server's configuration is never changed; the server writes each statement to its log
(stderr, read back with ``pg_read_binary_file`` as the superuser) and the watch keeps the entries
of the backends it saw open. DuckDB keeps no such log: its ``connect`` is wrapped and every
``execute`` recorded on the client.

A statement is checked against its *twin*: the same path run with the same structure but plain
names (``n0``, ``n1``…). Lexed PostgreSQL-style (quoted names, strings with ``''``, dollar quotes,
comments, parameters), the two must have the same shape token for token once names and strings
are set aside, no comment and no ``;`` but at the end, and each quoted name must be the one the
twin has in its place (through the renaming), the same fixed name, or a derived name of the same
pattern. A name that escaped its quotes changes the shape; a name that lost a character (``%``
read as a placeholder, a NUL cutting it short) no longer maps onto the twin's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from support.pgschema import DSN

# -- lexing --------------------------------------------------------------------------------------


class Unlexable(ValueError):
    """Text no PostgreSQL lexer would end cleanly (an unterminated quote or comment)."""


@dataclass(frozen=True)
class Token:
    kind: str  # ident | string | word | number | param | punct | comment
    text: str  # the name or string unquoted; words upper-cased


_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_PARAM = re.compile(r"\$\d+|\$[A-Za-z_][A-Za-z0-9_]*(?!\$)|\?")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def _quoted(sql: str, start: int, quote: str) -> tuple[str, int]:
    out, i = [], start + 1
    while True:
        end = sql.find(quote, i)
        if end < 0:
            raise Unlexable(f"unterminated {quote} at {start}")
        out.append(sql[i:end])
        if sql.startswith(quote * 2, end):
            out.append(quote)
            i = end + 2
            continue
        return "".join(out), end + 1


def _block_comment(sql: str, start: int) -> int:
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise Unlexable(f"unterminated comment at {start}")


def lex(sql: str) -> list[Token]:
    """``sql`` as tokens, PostgreSQL's (and DuckDB's) way."""
    tokens: list[Token] = []
    i = 0
    while i < len(sql):
        char = sql[i]
        if char in " \t\n\r\f\v":  # PostgreSQL's whitespace: other spaces are name characters
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = len(sql) if end < 0 else end
            tokens.append(Token("comment", sql[i:end]))
            i = end
        elif sql.startswith("/*", i):
            end = _block_comment(sql, i)
            tokens.append(Token("comment", sql[i:end]))
            i = end
        elif char == '"':
            text, i = _quoted(sql, i, '"')
            tokens.append(Token("ident", text))
        elif char == "'":
            text, i = _quoted(sql, i, "'")
            tokens.append(Token("string", text))
        elif char in "eE" and sql.startswith("'", i + 1):
            raise Unlexable(f"escape string at {i}")  # headrace never writes E'…'
        elif (tag := _DOLLAR_TAG.match(sql, i)) is not None:
            end = sql.find(tag.group(), tag.end())
            if end < 0:
                raise Unlexable(f"unterminated dollar quote at {i}")
            tokens.append(Token("string", sql[tag.end() : end]))
            i = end + len(tag.group())
        elif (param := _PARAM.match(sql, i)) is not None:
            tokens.append(Token("param", param.group()))
            i = param.end()
        elif (word := _WORD.match(sql, i)) is not None:
            tokens.append(Token("word", word.group().upper()))
            i = word.end()
        elif (number := _NUMBER.match(sql, i)) is not None:
            tokens.append(Token("number", number.group()))
            i = number.end()
        else:
            tokens.append(Token("punct", char))
            i += 1
    return tokens


def shape(tokens: list[Token]) -> list[tuple[str, str]]:
    """The statement with its names and strings set aside."""
    return [(t.kind, "" if t.kind in ("ident", "string") else t.text) for t in tokens]


# -- comparing a run with its twin -----------------------------------------------------------


DERIVED = [
    re.compile(r"_hr_(?:new|old)_[0-9a-f]{16}"),  # a warehouse's staging and swapped-out tables
    re.compile(r".*_[0-9a-f]{12}_key", re.DOTALL),  # the postgres sink's unique indexes
]


def unintended(hostile: list[str], twin: list[str], renamed: dict[str, str]) -> list[str]:
    """Why each of ``hostile`` is not the statement its twin is (empty: every one is).
    ``renamed`` maps each hostile name to the plain name the twin used in its place."""
    problems: list[str] = []
    if len(hostile) != len(twin):
        problems.append(f"{len(hostile)} statements where the twin ran {len(twin)}")
    for number, (ours, theirs) in enumerate(zip(hostile, twin, strict=False)):
        why = _differs(ours, theirs, renamed)
        if why:
            problems.append(f"statement {number}: {why}: {ours!r} (twin: {theirs!r})")
    return problems


def _differs(ours: str, theirs: str, renamed: dict[str, str]) -> str | None:
    try:
        mine = lex(ours)
    except Unlexable as exc:
        return f"does not lex ({exc})"
    reference = lex(theirs)
    if any(t.kind == "comment" for t in mine):
        return "holds a comment"
    if any(t == Token("punct", ";") for t in mine[:-1]):
        return "holds more than one statement"
    if shape(mine) != shape(reference):
        return "is shaped unlike its twin"
    for token, twin in zip(mine, reference, strict=True):
        if token.kind != "ident" or token.text == twin.text:
            continue
        if renamed.get(token.text) == twin.text:
            continue
        if any(p.fullmatch(token.text) and p.fullmatch(twin.text) for p in DERIVED):
            continue
        return f"names {token.text!r} where its twin names {twin.text!r}"
    return None


# -- PostgreSQL's statement log ----------------------------------------------------------------

_ENTRY = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] \S*@\S* ([A-Z]+):  (.*)$", re.DOTALL
)
_EXECUTED = re.compile(r"(?:statement|execute [^:]+): (.*)$", re.DOTALL)


@dataclass
class LogEntry:
    pid: int
    level: str
    text: str


class ServerLog:
    """The server's log file, read through the server (superuser ``pg_read_binary_file``)."""

    def __init__(self) -> None:
        self.conn = psycopg.connect(DSN, autocommit=True)
        row = self.conn.execute(
            "SELECT current_setting('logging_collector'), pg_current_logfile()"
        ).fetchone()
        assert row is not None
        # without the collector every backend writes to the postmaster's stderr: a file here
        self.path = row[1] if row[0] == "on" and row[1] else "/proc/self/fd/2"
        if self.size() <= 0:
            raise RuntimeError(f"the server's log {self.path} cannot be read through the server")

    def size(self) -> int:
        row = self.conn.execute("SELECT (pg_stat_file(%s)).size", (self.path,)).fetchone()
        return int(row[0]) if row else 0

    def read(self, start: int) -> list[LogEntry]:
        """The entries written since byte ``start``."""
        end = self.size()
        row = self.conn.execute(
            "SELECT pg_read_binary_file(%s, %s, %s)", (self.path, start, max(0, end - start))
        ).fetchone()
        data = bytes(row[0]) if row else b""
        entries: list[LogEntry] = []
        for line in data.decode("utf-8", "replace").split("\n"):
            match = _ENTRY.match(line)
            if match:
                entries.append(LogEntry(int(match[1]), match[2], match[3]))
            elif line.startswith("\t") and entries:
                # the server writes a newline inside a message as newline + tab
                entries[-1].text += "\n" + line[1:]
        return entries

    def close(self) -> None:
        self.conn.close()


@dataclass
class Watch:
    """What one watched run sent: the statements in order, and what went wrong with them."""

    statements: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    backends: set[int] = field(default_factory=set)


@contextmanager
def postgres_statements(log: ServerLog) -> Iterator[Watch]:
    """Every statement PostgreSQL logged for the connections opened in the block."""
    watch = Watch()
    real = psycopg.connect
    start = log.size()

    def logged_connect(*args: Any, **kwargs: Any) -> Any:
        options = kwargs.pop("options", "")
        conn = real(*args, options=f"{options} -c log_statement=all".strip(), **kwargs)
        watch.backends.add(conn.info.backend_pid)
        return conn

    psycopg.connect = logged_connect
    try:
        yield watch
    finally:
        psycopg.connect = real
        for entry in log.read(start):
            if entry.pid not in watch.backends:
                continue
            if entry.level in ("ERROR", "FATAL", "PANIC"):
                watch.errors.append(entry.text)
            elif entry.level == "LOG" and (executed := _EXECUTED.match(entry.text)):
                watch.statements.append(executed[1])


class _WatchedDuck:
    """A DuckDB connection whose every ``execute`` is recorded."""

    def __init__(self, conn: Any, watch: Watch) -> None:
        self._conn = conn
        self._watch = watch

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._watch.statements.append(query)
        return self._conn.execute(query, *args, **kwargs)

    def executemany(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._watch.statements.append(query)
        return self._conn.executemany(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@contextmanager
def duckdb_statements() -> Iterator[Watch]:
    """Every statement sent on the DuckDB connections opened in the block."""
    import duckdb

    watch = Watch()
    real: Callable[..., Any] = duckdb.connect

    def watched_connect(*args: Any, **kwargs: Any) -> Any:
        return _WatchedDuck(real(*args, **kwargs), watch)

    duckdb.connect = watched_connect
    try:
        yield watch
    finally:
        duckdb.connect = real
