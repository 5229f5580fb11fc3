"""Export files: compression, the header row, and a stream of the CSV bytes for a warehouse.

An export is RFC 4180 CSV (comma, double-quote quoting and escaping, fields may hold newlines)
with a header row, UTF-8 with or without a BOM, optionally gzip- or bzip2-compressed. The
compression is told by the magic bytes first (a ``.csv`` that is really gzip works) and by the
suffix otherwise. The warehouses parse the CSV themselves (COPY, DuckDB's reader); Python only
reads the header and, when a table has no schema yet, a sample of rows to infer column types.

Every read is bounded, because the file comes from a URL in a request body: the decompressed
bytes are counted against ``CsvFile.max_plain_bytes`` (the configured cap, lowered for a
compressed file by the compression-ratio limit, so a few KB of bzip2 cannot become a TiB), the
header must fit in ``MAX_HEADER`` bytes and a sampled line or field in ``MAX_LINE``.
"""

from __future__ import annotations

import builtins
import bz2
import codecs
import csv
import gzip
import io
import os
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from headrace.errors import LoadError, TerminalLoadError

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
BOM = codecs.BOM_UTF8
CHUNK = 1024 * 1024
MAX_HEADER = 1024 * 1024  # the header row, read into memory at once
MAX_LINE = 16 * 1024 * 1024  # one physical line (and one field) while sampling for inference
RATIO_FLOOR = 64 * 1024 * 1024  # the ratio limit never caps a file below this
UNLIMITED = 2**63 - 1


def compression_of(path: Path) -> str:
    """``gzip``, ``bzip2`` or ``none``: by magic bytes, then by suffix."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(BZIP2_MAGIC) and len(head) == 4 and head[3:4].isdigit():
        return "bzip2"
    suffix = path.suffix.lower()
    if suffix in (".gz", ".gzip") and head:
        return "gzip"
    if suffix in (".bz2", ".bzip2") and head:
        return "bzip2"
    return "none"


def open_plain(path: Path, compression: str | None = None) -> IO[bytes]:
    """The file's uncompressed bytes as a binary stream."""
    kind = compression or compression_of(path)
    if kind == "gzip":
        return cast(IO[bytes], gzip.open(path, "rb"))
    if kind == "bzip2":
        return cast(IO[bytes], bz2.open(path, "rb"))
    return open(path, "rb")


def plain_limit(
    path: Path, compression: str, max_bytes: int = UNLIMITED, max_ratio: float | None = None
) -> int:
    """Most uncompressed bytes ``path`` may hold: ``max_bytes``, and for a compressed file at
    most ``max_ratio`` times its size (never below ``RATIO_FLOOR``)."""
    if compression == "none" or max_ratio is None:
        return max_bytes
    by_ratio = max(RATIO_FLOOR, int(os.path.getsize(path) * max_ratio))
    return min(max_bytes, by_ratio)


def _too_large(path: Path, limit: int) -> LoadError:
    return TerminalLoadError(
        "decompressed_too_large",
        f"{path.name}: more than {limit} bytes once decompressed (the limit is "
        "fetch.max_decompressed_bytes, and max_compression_ratio times the file's size)",
    )


def chunks(path: Path, compression: str | None = None, limit: int = UNLIMITED) -> Iterator[bytes]:
    """The uncompressed bytes in chunks of about 1 MiB; corrupt compression is a ``LoadError``,
    and so is more than ``limit`` bytes (``decompressed_too_large``)."""
    total = 0
    try:
        with open_plain(path, compression) as stream:
            while chunk := stream.read(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise _too_large(path, limit)
                yield chunk
    except (OSError, EOFError, ValueError) as exc:
        raise TerminalLoadError("corrupt_file", f"{path.name}: cannot decompress: {exc}") from exc


def _bounded_lines(text: IO[str], path: Path) -> Iterator[str]:
    # csv.reader asks for whole lines: one without a newline would be read into memory whole
    while line := text.readline(MAX_LINE):
        if len(line) >= MAX_LINE and not line.endswith(("\n", "\r")):
            raise TerminalLoadError(
                "line_too_long", f"{path.name}: a line is longer than {MAX_LINE} characters"
            )
        yield line


def _text_rows(path: Path, compression: str) -> Generator[list[str], None, None]:
    raw = open_plain(path, compression)
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    try:
        yield from csv.reader(_bounded_lines(text, path), strict=True)
    finally:
        text.close()


def _header_row(path: Path, compression: str) -> list[str] | None:
    """The first CSV record, read from at most ``MAX_HEADER`` bytes."""
    with open_plain(path, compression) as raw:
        head = raw.read(MAX_HEADER + 1)
    cut = len(head) > MAX_HEADER
    # a multi-byte character cut at the limit is not an error; an invalid one anywhere is
    text = codecs.getincrementaldecoder("utf-8-sig")().decode(head[:MAX_HEADER], final=not cut)
    stream = io.StringIO(text, newline="")
    too_large = TerminalLoadError(
        "header_too_large", f"{path.name}: line 1: the header is longer than {MAX_HEADER} bytes"
    )
    try:
        row = next(csv.reader(stream, strict=True), None)
    except csv.Error:
        if cut:  # a quoted field still open where the read stopped
            raise too_large from None
        raise
    if cut and stream.tell() >= len(text):  # the record may go on past what was read
        raise too_large
    return row


@dataclass(frozen=True)
class CsvFile:
    """A staged export file and what its header says."""

    path: Path
    compression: str
    header: list[str]
    bytes: int
    max_plain_bytes: int = UNLIMITED
    """Most bytes the file may hold once decompressed (see ``plain_limit``)."""

    @classmethod
    def open(
        cls, path: Path, max_decompressed: int = UNLIMITED, max_ratio: float | None = None
    ) -> CsvFile:
        """Read the header; ``LoadError`` naming the file if it is not usable CSV."""
        compression = compression_of(path)
        csv.field_size_limit(MAX_LINE)
        try:
            header = _header_row(path, compression)
        except (csv.Error, UnicodeDecodeError, OSError, EOFError) as exc:
            raise TerminalLoadError(
                "bad_csv", f"{path.name}: line 1: cannot read the header: {exc}"
            ) from exc
        if not header or not any(h.strip() for h in header):
            raise TerminalLoadError("bad_csv", f"{path.name}: line 1: the file has no header row")
        names = [h.strip() for h in header]
        seen: set[str] = set()
        for index, name in enumerate(names, 1):
            if not name:
                raise TerminalLoadError(
                    "bad_csv", f"{path.name}: line 1: column {index} has no name"
                )
            if "\x00" in name or len(name.encode()) > 63:
                raise TerminalLoadError(
                    "bad_csv", f"{path.name}: line 1: column {index} is not a usable name"
                )
            if name in seen:
                raise TerminalLoadError(
                    "bad_csv", f'{path.name}: line 1: column "{name}" appears twice'
                )
            seen.add(name)
        limit = plain_limit(path, compression, max_decompressed, max_ratio)
        return cls(path, compression, names, os.path.getsize(path), limit)

    def chunks(self) -> Iterator[builtins.bytes]:
        """The uncompressed bytes, ``decompressed_too_large`` past ``max_plain_bytes``."""
        return chunks(self.path, self.compression, self.max_plain_bytes)

    def sample(self, limit: int) -> Iterator[tuple[int, list[str]]]:
        """Up to ``limit`` data rows with their line numbers; ``LoadError`` on broken CSV."""
        line = 1
        rows = _text_rows(self.path, self.compression)
        try:
            next(rows, None)
            for count, row in enumerate(rows):
                if count >= limit:
                    return
                line += 1
                if len(row) != len(self.header):
                    raise TerminalLoadError(
                        "bad_csv",
                        f"{self.path.name}: row {count + 1}: {len(row)} fields, "
                        f"the header has {len(self.header)}",
                    )
                yield line, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TerminalLoadError(
                "bad_csv", f"{self.path.name}: after row {line}: {exc}"
            ) from exc
        finally:
            rows.close()

    def plain_path(self, scratch: Path) -> Path:
        """A new uncompressed copy in ``scratch`` for readers that must not decompress it
        themselves; the caller deletes it. Never shared or reused: two exports may have the
        same file name, and a copy left by a crash may be cut short."""
        if self.compression == "none":
            return self.path
        out = scratch / f"{uuid.uuid4().hex}-{self.path.name}.plain.csv"
        try:
            with open(out, "wb") as f:
                for chunk in self.chunks():
                    f.write(chunk)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return out
