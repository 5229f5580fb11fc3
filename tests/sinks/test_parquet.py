from __future__ import annotations

import io
from typing import Any

import pyarrow.parquet as pq
import pytest

from headrace.sinks.parquet import UNSET, coerce, parquet_bytes, table_from_records

FIELDS = {"name": "string", "n": "int64", "x": "float64", "ok": "bool", "at": "timestamp"}


def test_values_that_do_not_fit_are_reported_never_nulled_or_truncated() -> None:
    records = [
        {"name": "a", "n": 1, "x": 1, "ok": True, "at": 1_763_800_000_000},
        {"name": "b", "n": 1.5, "x": 2.0, "ok": False, "at": "2025-11-22T08:00:00Z"},
        {"name": "c", "n": 3, "x": True, "ok": None, "at": None},
        {"name": 4, "n": 4, "x": 4.0},
        {"name": "e", "n": 2**63, "x": 4.0},
        {"name": "f", "n": 5, "x": 5.0, "ok": "yes"},
        {"name": "g", "n": 6, "x": 6.0, "at": "not a time"},
    ]
    built = table_from_records(records, FIELDS)
    assert sorted(built.failed) == [1, 2, 3, 4, 5, 6]
    assert 'field "n" is declared int64; got float 1.5' in built.failed[1]
    assert built.table.to_pylist()[0]["x"] == 1.0
    assert built.table.num_rows == 1


def test_required_fields_unknown_fields_and_timestamps() -> None:
    records = [{"name": "a", "n": 1, "more": {"k": 1}}, {"n": 2}]
    built = table_from_records(records, {"name": "string", "n": "int64"}, required=["name"],
                               unknown="keep_json")  # fmt: skip
    assert list(built.failed) == [1] and "required" in built.failed[1]
    assert built.table.to_pylist() == [{"name": "a", "n": 1, "_extra": '{"more":{"k":1}}'}]
    strict = table_from_records(records[:1], {"name": "string", "n": "int64"}, unknown="error")
    assert "undeclared" in strict.failed[0]
    times = table_from_records([{"at": 1_763_800_000}, {"at": "2025-11-22T08:26:40Z"}],
                               {"at": "timestamp"})  # fmt: skip
    values = times.table.column("at").to_pylist()
    assert values[0] == values[1]


def test_bytes_round_trip_with_the_chosen_compression() -> None:
    built = table_from_records([{"name": "a", "n": 1}] * 10, {"name": "string", "n": "int64"})
    for codec in ("zstd", "snappy"):
        data = parquet_bytes(built.table, codec)
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        assert meta.row_group(0).column(0).compression.lower() == codec
        assert pq.read_table(io.BytesIO(data)).num_rows == 10


def test_whole_epoch_times_and_ints_converted_by_arrow_match_the_per_value_rules() -> None:
    from headrace.storage.lake_catalog import parse_time_us

    values = [1_763_800_000, 1_763_800_000_123, 1_763_800_000_123_456, None]
    built = table_from_records([{"at": v, "n": i} for i, v in enumerate(values)],
                               {"at": "timestamp", "n": "int64"}, required=["n"])  # fmt: skip
    got = [
        None if v is None else int(v.timestamp() * 1_000_000)
        for v in built.table.column("at").to_pylist()
    ]
    assert got == [parse_time_us(v) for v in values]
    missing = table_from_records([{"n": 1}, {"n": None}, {}], {"n": "int64"}, required=["n"])
    assert sorted(missing.failed) == [1, 2]


def test_fast_columns_keep_the_per_value_rules() -> None:
    # whole columns go to Arrow in one step; these are the mixes where plain pyarrow would
    # coerce (True after a float is 1.0, 1.5 in int64 is 1, epoch seconds past 64 bits wrap)
    records = [
        {"x": 1.5, "n": 1, "at": 1_763_800_000},
        {"x": True, "n": 2, "at": 1_763_800_001},
        {"x": 2.5, "n": 3.0, "at": 10**13},
        {"x": 2**60, "n": 4, "at": None},  # past what Arrow casts, yet exactly a double
    ]
    built = table_from_records(records, {"x": "float64", "n": "int64", "at": "timestamp"},
                               time_format="epoch_s")  # fmt: skip
    assert sorted(built.failed) == [1, 2]
    assert 'field "x" is declared float64; got bool true' in built.failed[1]
    assert 'field "n" is declared int64; got float 3.0' in built.failed[2]
    rows = built.table.to_pylist()
    assert [r["x"] for r in rows] == [1.5, float(2**60)]
    assert rows[0]["at"].timestamp() == 1_763_800_000 and rows[1]["at"] is None
    wrapped = table_from_records([{"at": 10**13}], {"at": "timestamp"}, time_format="epoch_s")
    assert list(wrapped.failed) == [0]
    assert table_from_records([{"s": b"x"}], {"s": "string"}).failed  # bytes are not text
    big = table_from_records([{"x": 2**60}, {"x": 1}], {"x": "float64"})  # ints only
    assert big.table.column("x").to_pylist() == [float(2**60), 1.0] and not big.failed


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        ([2**60 + 1], [0]),  # an int64 column for Arrow, refused by its cast
        ([2**60 + 1, 2**60], [0]),
        ([1.5, 2**60 + 1], [1]),  # a mix Arrow refuses to infer
        ([None, -(2**53) - 1], [1]),
        ([10**400, 2.5], [0]),  # past any double
    ],
)
def test_an_int_a_float64_cannot_hold_exactly_is_a_type_error(
    values: list[Any], bad: list[int]
) -> None:
    built = table_from_records([{"x": v} for v in values], {"x": "float64"})
    assert sorted(built.failed) == bad
    assert 'field "x" is declared float64; got int' in built.failed[bad[0]]
    assert "not exactly a float64" in built.failed[bad[0]]
    kept = [None if v is None else float(v) for i, v in enumerate(values) if i not in bad]
    assert built.table.column("x").to_pylist() == kept
    assert coerce(2**60 + 1, "float64") is UNSET and coerce(2**60, "float64") == 2.0**60


def test_undeclared_fields_found_for_the_rows_that_have_them() -> None:
    records = [{"n": i} for i in range(5)]
    records[1]["a"] = 1
    records[3].update(b=[2], n=None)
    kept = table_from_records(records, {"n": "int64"}, unknown="keep_json")
    assert kept.table.column("_extra").to_pylist() == [None, '{"a":1}', None, '{"b":[2]}', None]
    strict = table_from_records(records, {"n": "int64"}, unknown="error", required=["n"])
    assert sorted(strict.failed) == [1, 3]
    assert "undeclared field(s): a" in strict.failed[1]
    assert table_from_records([{}, {}], {"n": "int64"}).table.column("n").null_count == 2
    # as many keys as declared, but one of them is not declared
    swapped = table_from_records([{"n": 1, "m": 2}, {"n": 3, "x": 4}], {"n": "int64", "m": "int64"},
                                 unknown="keep_json")  # fmt: skip
    assert swapped.table.column("_extra").to_pylist() == [None, '{"x":4}']
