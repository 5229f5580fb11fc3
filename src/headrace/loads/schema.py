"""A target table's columns: from a DDL file, from an existing table, or inferred.

Types are kept as the DDL spells them, lower-cased (``character varying(255)``, ``timestamp
without time zone``, ``hstore``, ``numeric(12,2)``, ``integer[]``, ``character varying(max)``);
each warehouse translates them. The DDL reader understands what ``pg_dump --schema-only`` writes:
``CREATE TABLE [schema.]name (...)`` with column constraints, table constraints, and ``ALTER
TABLE ONLY ... ADD CONSTRAINT ... PRIMARY KEY (...)``. It also reads ControlShift's ``tables.sql``
(Redshift-flavoured: ``DROP TABLE IF EXISTS x;`` before each ``CREATE TABLE x (...)``, types such
as ``CHARACTER VARYING(max)``, column attributes such as ``ENCODE`` or ``SORTKEY``). Everything
else in the file (DROP, SET, COMMENT, CREATE INDEX, ...) is skipped. Each column remembers the
file and line it was defined on, so an error about its type can point there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from headrace.errors import TerminalLoadError
from headrace.loads.csvfile import CsvFile

# "(max)": Redshift's longest varchar, which ControlShift's tables.sql uses for every text column
_TYPE_WORDS = re.compile(r"^[a-z][a-z0-9_ .]*(\((max|[0-9, ]+)\))?( with(out)? time zone)?(\[\])*$")
# what may follow a column's type; the last four are Redshift's (``IDENTITY(0,1)``, ``ENCODE
# zstd``, ``DISTKEY``, ``SORTKEY``)
_STOP_WORDS = ("not", "null", "default", "primary", "unique", "check", "references", "collate",
               "constraint", "generated", "identity", "encode", "distkey", "sortkey")  # fmt: skip
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_CREATE = re.compile(
    rf"create\s+(?:unlogged\s+)?table\s+(?:if\s+not\s+exists\s+)?((?:{_IDENT}\.)?{_IDENT})\s*\(",
    re.IGNORECASE,
)
# a parenthesised list of names: a quoted name may hold "(", ")" and ","
_NAME_LIST = r'\(((?:"(?:[^"]|"")*"|[^)"])*)\)'
_ALTER_PK = re.compile(
    rf"alter\s+table\s+(?:only\s+)?((?:{_IDENT}\.)?{_IDENT})\s+add\s+constraint\s+{_IDENT}\s+"
    rf"primary\s+key\s*{_NAME_LIST}",
    re.IGNORECASE,
)
_TABLE_PK = re.compile(rf"(?:constraint\s+{_IDENT}\s+)?primary\s+key\s*{_NAME_LIST}", re.IGNORECASE)


@dataclass(frozen=True)
class Column:
    """One column: its name and type (PostgreSQL spelling, or the DDL file's)."""

    name: str
    type: str
    not_null: bool = False
    where: str = field(default="", compare=False)  # "<file>: line <n>" when a DDL defined it

    def describe(self, table: str) -> str:
        """``<file>: line <n>: table <table>: column <name>``, for errors about this column."""
        place = f"{self.where}: " if self.where else ""
        return f"{place}table {table}: column {self.name}"


@dataclass(frozen=True)
class TableSchema:
    """A table's columns, in order, and its primary key."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    origin: str = "inferred"  # ddl | existing | inferred

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def check_header(self, file: CsvFile) -> None:
        """Every header name must be a column; ``LoadError`` naming the file and column if not."""
        names = {c.name for c in self.columns}
        unknown = [h for h in file.header if h not in names]
        if unknown:
            raise TerminalLoadError(
                "unknown_column",
                f"{file.path.name}: line 1: column(s) {', '.join(repr(u) for u in unknown)} are "
                f"not in table {self.name} ({self.origin} schema: "
                f"{', '.join(c.name for c in self.columns)})",
            )


def _unquote(ident: str) -> str:
    ident = ident.strip()
    if ident.startswith('"') and ident.endswith('"'):
        return ident[1:-1].replace('""', '"')
    return ident.lower()


def _names(text: str) -> tuple[str, ...]:
    """The names of a comma-separated list (the inside of ``PRIMARY KEY (…)``)."""
    return tuple(_unquote(name) for _, name in _split_top_level(text))


def _strip_comments(text: str) -> str:
    """``text`` without its ``--`` comments, each newline kept (so line numbers stay true);
    a ``--`` inside a quoted name or a string is no comment."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote is None and text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if quote is None and char in "\"'":
            quote = char
        elif char == quote:
            quote = None  # a doubled quote closes and reopens: the same text either way
        out.append(char)
        i += 1
    return "".join(out)


def _split_top_level(body: str) -> list[tuple[int, str]]:
    """The comma-separated parts of a table body, each with its offset in ``body``."""
    parts: list[tuple[int, str]] = []
    start, depth, quoted = 0, 0, False
    for index, char in enumerate(body):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif char == "," and depth == 0 and not quoted:
            parts.append((start, body[start:index]))
            start = index + 1
    parts.append((start, body[start:]))
    stripped = [(at + len(p) - len(p.lstrip()), p.strip()) for at, p in parts]
    return [(at, p) for at, p in stripped if p]


def _closing_paren(text: str, start: int) -> int:
    depth, quoted, single = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if char == "'" and not quoted:
            single = not single
        elif char == '"' and not single:
            quoted = not quoted
        elif not quoted and not single:
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return index
    raise ValueError("unbalanced parentheses")


def _column(definition: str, table: str, where: str) -> Column:
    match = re.match(rf"({_IDENT})\s+(.*)$", definition, re.DOTALL)
    if not match:
        raise TerminalLoadError(
            "bad_ddl", f"{where}: table {table}: cannot read the column definition {definition!r}"
        )
    name = _unquote(match.group(1))
    words = match.group(2).split()
    type_words = []
    for word in words:
        if word.lower().split("(", 1)[0] in _STOP_WORDS:
            break
        type_words.append(word)
    rest = " ".join(words[len(type_words) :]).lower()
    pg_type = " ".join(type_words).lower().removeprefix("public.")
    column = Column(name, pg_type, "not null" in rest or "primary key" in rest, where)
    if not _TYPE_WORDS.match(pg_type):
        raise TerminalLoadError(
            "bad_ddl", f"{column.describe(table)}: unsupported type {pg_type!r}"
        )
    return column


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def parse_ddl(text: str, table: str, where: str = "DDL") -> TableSchema | None:
    """The schema of ``table`` in a DDL file, or ``None`` if the file does not define it.
    ``where`` (the file's name) starts every error, followed by the line."""
    text = _strip_comments(text)
    for match in _CREATE.finditer(text):
        name = _unquote(re.findall(_IDENT, match.group(1))[-1])
        if name != table:
            continue
        open_at = match.end() - 1
        created = f"{where}: line {_line_at(text, match.start())}"
        try:
            close_at = _closing_paren(text, open_at)
        except ValueError as exc:
            raise TerminalLoadError("bad_ddl", f"{created}: table {table}: {exc}") from exc
        body = text[open_at + 1 : close_at]
        columns: list[Column] = []
        primary: tuple[str, ...] = ()
        for at, part in _split_top_level(body):
            lowered = part.lower()
            pk = _TABLE_PK.match(part)
            if pk:
                primary = _names(pk.group(1))
                continue
            if re.match(r"(constraint|unique|check|foreign|exclude|like)\b", lowered):
                continue
            line = _line_at(text, open_at + 1 + at)
            column = _column(part, table, f"{where}: line {line}")
            columns.append(column)
            after_name = re.match(_IDENT, part)
            if re.search(r"\bprimary\s+key\b", lowered[after_name.end() if after_name else 0 :]):
                primary = (column.name,)
        for alter in _ALTER_PK.finditer(text):
            alter_name = _unquote(re.findall(_IDENT, alter.group(1))[-1])
            if alter_name == table:
                primary = _names(alter.group(2))
        if not columns:
            raise TerminalLoadError("bad_ddl", f"{created}: table {table} has no columns")
        return TableSchema(table, tuple(columns), primary, "ddl")
    return None


def schema_from_files(location: str | None, table: str) -> TableSchema | None:
    """``table``'s schema from a DDL file or a directory of ``<table>.sql`` files, if defined."""
    if location is None:
        return None
    path = Path(location)
    candidates = [path / f"{table}.sql"] if path.is_dir() else [path]
    for candidate in candidates:
        if not candidate.exists():
            continue
        try:
            # newline="": a CR inside a quoted name is part of the name, not a line end
            with candidate.open(encoding="utf-8", newline="") as ddl:
                text = ddl.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise TerminalLoadError("bad_ddl", f"cannot read {candidate}: {exc}") from exc
        try:
            found = parse_ddl(text, table, str(candidate))
        except ValueError as exc:
            raise TerminalLoadError("bad_ddl", f"{candidate}: {exc}") from exc
        if found is not None:
            return found
    return None


# -- inference ------------------------------------------------------------------------------

_INT = re.compile(r"^[+-]?\d{1,18}$")
# one way to match each digit: ``\d+\.?\d*`` split a run of digits every possible way, so a long
# run followed by a letter took quadratic time (40 KB: 45 s, holding the GIL)
_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_TYPED_LENGTH = 64  # longer values are text: no number, date or boolean is that long
_BOOL = {"true", "false", "t", "f"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")
_TIMESTAMPTZ = re.compile(
    r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)$"
)
_ORDER = ["boolean", "bigint", "double precision", "date", "timestamp without time zone",
          "timestamp with time zone", "text"]  # fmt: skip


def _fits(value: str) -> set[str]:
    fits = {"text"}
    if len(value) > _TYPED_LENGTH:
        return fits
    if _INT.match(value):
        fits |= {"bigint", "double precision"}
    elif _FLOAT.match(value):
        fits.add("double precision")
    if value.lower() in _BOOL:
        fits.add("boolean")
    if _DATE.match(value):
        fits |= {"date", "timestamp without time zone"}
    elif _TIMESTAMP.match(value):
        fits.add("timestamp without time zone")
    elif _TIMESTAMPTZ.match(value):
        fits.add("timestamp with time zone")
    return fits


@dataclass
class _Guess:
    possible: set[str] = field(default_factory=lambda: set(_ORDER))
    seen: bool = False


def infer_schema(table: str, file: CsvFile, rows: int) -> TableSchema:
    """Columns named by the header, each typed by the narrowest type all sampled values fit
    (boolean, bigint, double precision, date, timestamp, timestamptz, else text)."""
    guesses = [_Guess() for _ in file.header]
    for _line, row in file.sample(rows):
        for guess, value in zip(guesses, row, strict=True):
            if value == "":
                continue
            guess.seen = True
            guess.possible &= _fits(value)
    columns = []
    for name, guess in zip(file.header, guesses, strict=True):
        chosen = next((t for t in _ORDER if t in guess.possible), "text") if guess.seen else "text"
        columns.append(Column(name, chosen))
    return TableSchema(table, tuple(columns), (), "inferred")
