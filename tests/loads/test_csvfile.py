"""Export files: compression by magic bytes or suffix, BOM, header checks."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import pytest

from headrace.errors import LoadError
from headrace.loads import csvfile
from headrace.loads.csvfile import CsvFile, chunks, compression_of
from support.exportserver import write

DATA = b'\xef\xbb\xbfid,"na,me"\n1,"a\nb"\n'


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("e.csv", DATA, "none"),
        ("e.csv.gz", gzip.compress(DATA), "gzip"),
        ("e.csv.bz2", bz2.compress(DATA), "bzip2"),
        ("e.csv", gzip.compress(DATA), "gzip"),  # magic bytes win over the name
        ("e.csv.gz", bz2.compress(DATA), "bzip2"),
        ("download", bz2.compress(DATA), "bzip2"),
    ],
)
def test_compression_and_header(tmp_path: Path, name: str, data: bytes, kind: str) -> None:
    path = write(tmp_path / name, data)
    assert compression_of(path) == kind
    file = CsvFile.open(path)
    assert file.header == ["id", "na,me"]  # BOM gone, quotes honoured
    assert b"".join(chunks(path, kind)) == DATA
    assert list(file.sample(10)) == [(2, ["1", "a\nb"])]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no header row"),
        (b"id,,name\n", "column 2 has no name"),
        (b"id,id\n", 'column "id" appears twice'),
        (b"\xff\xfe\x00i\x00d\n", "cannot read the header"),
    ],
)
def test_bad_headers_name_file_and_line(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(LoadError, match=message) as caught:
        CsvFile.open(write(tmp_path / "bad.csv", data))
    assert "bad.csv: line 1" in str(caught.value)


def test_corrupt_compression_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv.gz", gzip.compress(b"id\n" * 1000)[:40])
    with pytest.raises(LoadError, match="cannot decompress"):
        b"".join(chunks(path, "gzip"))


def test_rows_with_the_wrong_field_count_are_named(tmp_path: Path) -> None:
    file = CsvFile.open(write(tmp_path / "r.csv", b"a,b\n1,2\n3\n"))
    with pytest.raises(LoadError, match=r"r\.csv: row 2: 1 fields, the header has 2"):
        list(file.sample(10))


def test_a_header_that_never_ends_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    # an opening quote then megabytes of text: it used to be read into memory whole
    comp = bz2.BZ2Compressor(9)
    data = comp.compress(b'"') + comp.compress(b"a" * (8 << 20)) + comp.flush()
    with pytest.raises(LoadError) as caught:
        CsvFile.open(write(tmp_path / "h.csv.bz2", data))
    assert caught.value.reason == "header_too_large"


def test_a_header_longer_than_its_bounded_read_but_complete_is_fine(tmp_path: Path) -> None:
    body = b"id,name\n" + b"1," + b"x" * (2 << 20) + b"\n"
    assert CsvFile.open(write(tmp_path / "ok.csv", body)).header == ["id", "name"]


def test_a_line_without_end_is_refused_while_sampling(tmp_path: Path) -> None:
    file = CsvFile.open(write(tmp_path / "l.csv", b"a,b\n" + b"1," * (9 << 20)))
    with pytest.raises(LoadError) as caught:
        list(file.sample(10))
    assert caught.value.reason == "line_too_long"


def test_decompressed_bytes_are_capped(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv.gz", gzip.compress(b"id\n" + b"1\n" * 100_000))
    file = CsvFile.open(path, max_decompressed=50_000)
    assert file.max_plain_bytes == 50_000
    with pytest.raises(LoadError) as caught:
        b"".join(file.chunks())
    assert caught.value.reason == "decompressed_too_large"
    assert len(b"".join(CsvFile.open(path).chunks())) == 200_003  # no cap: all of it


def test_the_compression_ratio_lowers_the_cap_of_a_bomb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvfile, "RATIO_FLOOR", 1 << 20)  # 64 MiB in production
    comp = bz2.BZ2Compressor(9)
    data = comp.compress(b"id\n") + comp.compress(b"1\n" * (2 << 20)) + comp.flush()
    path = write(tmp_path / "bomb.csv.bz2", data)
    file = CsvFile.open(path, max_ratio=200)
    assert file.max_plain_bytes == 1 << 20  # the floor: 200 x a few hundred bytes is less
    with pytest.raises(LoadError, match=r"bomb\.csv\.bz2: more than 1048576 bytes"):
        for _chunk in file.chunks():
            pass
    big = CsvFile.open(path, max_ratio=1_000_000)
    assert big.max_plain_bytes == len(data) * 1_000_000
    assert sum(len(c) for c in big.chunks()) == 3 + (4 << 20)
    plain = write(tmp_path / "plain.csv", b"id\n1\n")
    assert CsvFile.open(plain, max_ratio=1).max_plain_bytes > 1 << 40  # not compressed
