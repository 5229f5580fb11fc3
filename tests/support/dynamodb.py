"""The items of a DynamoDB table (on the moto server), as plain JSON values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def plain(value: Any) -> Any:
    """A value boto3's resource API returns, as JSON has it: integral numbers as ``int``, others
    as ``float``, binary as ``bytes``, sets as sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if hasattr(value, "value") and isinstance(value.value, bytes):  # boto3's Binary
        return bytes(value.value)
    return value


def table_items(endpoint_url: str, table: str) -> list[dict[str, Any]]:
    """Every item of ``table`` (a consistent scan, all pages), as plain values."""
    import boto3

    resource = boto3.resource("dynamodb", endpoint_url=endpoint_url, region_name="us-east-1")
    handle = resource.Table(table)
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = handle.scan(**kwargs)
        items += [plain(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


__all__ = ["plain", "table_items"]
