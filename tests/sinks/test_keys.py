from __future__ import annotations

import pytest

from headrace.keys import DEFAULT_TIME_PREFIX, KeyTemplate, PartitionKeyMissing, object_name
from headrace.storage.lake_catalog import partition_of

T = 1_763_800_000_123_456  # 2025-11-22T08:26:40.123456Z


def test_a_prefix_without_a_timestamp_gets_firehose_default_hour_layout() -> None:
    assert KeyTemplate("firehose/", default_time=DEFAULT_TIME_PREFIX).render(T) == (
        "firehose/2025/11/22/08/"
    )
    assert KeyTemplate("", default_time=DEFAULT_TIME_PREFIX).render(T) == "2025/11/22/08/"
    # a prefix with its own timestamp keeps it as written
    custom = KeyTemplate("d=!{timestamp:yyyy-MM-dd}/", default_time=DEFAULT_TIME_PREFIX)
    assert custom.render(T) == "d=2025-11-22/"


def test_java_patterns_quotes_and_milliseconds() -> None:
    template = KeyTemplate("!{timestamp:'year='yyyy/'m='MM}/!{timestamp:HH:mm:ss.SSS}")
    assert template.render(T) == "year=2025/m=11/08:26:40.123"


def test_partition_keys_come_from_fields_and_cannot_escape_their_segment() -> None:
    template = KeyTemplate("c=!{partitionKeyFromQuery:customer.id}/!{timestamp:yyyy}/")
    assert template.render(T, {"customer": {"id": 42}}) == "c=42/2025/"
    assert template.render(T, {"customer": {"id": "../../etc"}}) == "c=..%2F..%2Fetc/2025/"
    assert template.render(T, {"customer": {"id": ".."}}) == "c=%2E%2E/2025/"
    with pytest.raises(PartitionKeyMissing, match=r"customer\.id"):
        template.render(T, {"customer": {}})
    with pytest.raises(PartitionKeyMissing):
        template.render(T, {"customer": {"id": {"nested": 1}}})


def test_error_output_type_and_bad_templates() -> None:
    template = KeyTemplate("errors/!{firehose:error-output-type}/")
    assert template.render(T, error_type="format-conversion-failed") == (
        "errors/format-conversion-failed/"
    )
    for bad in ("!{nope:x}", "!{timestamp:yyyy-QQ}", "!{partitionKeyFromQuery:}", "x/!{timestamp"):
        with pytest.raises(ValueError):
            KeyTemplate(bad)


def test_object_names_follow_firehose() -> None:
    name = object_name("clicks", T, "parquet")
    assert name.startswith("clicks-2025-11-22-08-26-40-")
    assert name.endswith(".parquet") and len(name) == len("clicks-2025-11-22-08-26-40-") + 36 + 8


def test_the_lake_partitions_through_the_same_engine() -> None:
    assert partition_of(T) == "dt=2025-11-22/hour=08"
    # partitions are cached by hour: the hour's edges, and times before 1970, still render right
    hour = 3600 * 1_000_000
    start = T - T % hour
    assert partition_of(start - 1) == "dt=2025-11-22/hour=07"
    assert partition_of(start) == partition_of(start + hour - 1) == "dt=2025-11-22/hour=08"
    assert partition_of(-1) == "dt=1969-12-31/hour=23"


@pytest.mark.parametrize("time_us", [10**24, -(10**20), 253_402_300_800_000_000])
def test_a_time_outside_years_1_to_9999_is_a_missing_partition_key(time_us: int) -> None:
    template = KeyTemplate("!{timestamp:yyyy}/!{partitionKeyFromQuery:k}/")
    with pytest.raises(PartitionKeyMissing, match="outside the years 1-9999"):
        template.render(time_us, {"k": "v"})
    assert template.render(T, {"k": "v"}) == "2025/v/"
