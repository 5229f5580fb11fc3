"""``GET`` on a source whose ``read.sink`` is a dynamodb sink: a Query, never a Scan.

DynamoDB reads one partition at a time, so the partition key is a required parameter
(``?pagePath=/pricing``); the sort key is the time, bounded by ``since``/``until`` (already
filled in and checked by ``source_read.bounded_params``): epoch milliseconds for a number key,
ISO 8601 UTC text (``2026-12-02T07:00:00.000Z``) for a string key. Other ``field=value``
parameters become a FilterExpression, with names and values bound as expression attributes.
Newest first; ``limit`` items a page and an opaque cursor (DynamoDB's LastEvaluatedKey), so a
request reads a bounded number of items whatever the table holds.
"""

from __future__ import annotations

import base64
import binascii
import threading
from decimal import Decimal
from typing import Any

import msgspec

from headrace.query.lake import (
    RESERVED_PARAMS,
    QueryError,
    iso,
    parse_limit,
    parse_time_param,
)
from headrace.sinks.dynamodb.config import DynamoDBConfig
from headrace.transforms.builtin.apply import iso8601

MAX_CALLS = 10
"""Query calls one GET may make to fill a page when a filter skips items."""
_ATTRIBUTE_TYPES = frozenset({"S", "N", "B"})


class ReadUnavailable(Exception):
    """The table cannot be read now (the service is down, the table is missing)."""


class DynamoReader:
    """Reads one dynamodb sink's table; one boto3 client, shared by the worker's threads."""

    def __init__(self, config: DynamoDBConfig) -> None:
        assert config.sort_key is not None  # the pipeline check makes sure
        self.config = config
        self.partition = config.partition_key
        self.sort = config.sort_key
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from headrace.drivers.aws import aws_client
                from headrace.errors import TransientSinkError

                try:
                    self._client = aws_client(
                        "dynamodb",
                        endpoint_url=self.config.endpoint_url,
                        region=self.config.region,
                        max_attempts=3,
                    )
                except TransientSinkError as exc:  # boto3 is an optional extra
                    raise ReadUnavailable(str(exc)) from exc
            return self._client

    def query(self, stream: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """The events API answer for ``params`` (with ``since`` and ``until`` present)."""
        values = dict(params)
        key = self.partition.name
        if not values.get(key):
            raise QueryError(
                "missing_parameter",
                f"{key} is required: the table is read one {key} at a time",
            )
        limit = parse_limit(values)
        since_us = parse_time_param("since", values["since"])
        until_us = parse_time_param("until", values["until"])
        names = {"#p": key, "#t": self.sort.name}
        bound: dict[str, Any] = {
            ":p": _key_value(self.partition.type, values[key], key),
            ":lo": self._time_value(-(-since_us // 1000) * 1000),
            ":hi": self._time_value(until_us - 1),
        }
        filters = []
        for index, (name, value) in enumerate(
            (k, v) for k, v in params if k not in RESERVED_PARAMS and k != key
        ):
            names[f"#f{index}"] = name
            bound[f":f{index}"] = {"S": value}
            condition = f"#f{index} = :f{index}"
            if _is_number(value):  # the text as sent, or the number it spells
                bound[f":n{index}"] = {"N": value}
                condition = f"({condition} OR #f{index} = :n{index})"
            filters.append(condition)
        request: dict[str, Any] = {
            "TableName": self.config.table,
            "KeyConditionExpression": "#p = :p AND #t BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": bound,
            "ScanIndexForward": False,
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        start = (
            _decode_cursor(values["cursor"], key, self.sort.name) if values.get("cursor") else None
        )
        items: list[dict[str, Any]] = []
        for _ in range(MAX_CALLS):
            if start is not None:
                request["ExclusiveStartKey"] = start
            # never more evaluated than the page still needs: the cursor is then exact
            request["Limit"] = limit - len(items)
            answer = self._call(request)
            items += answer.get("Items", [])
            start = answer.get("LastEvaluatedKey")
            if start is None or len(items) >= limit:
                break
        events = [self._event(item) for item in items]
        return {"stream": stream, "events": events, "next_cursor": _encode_cursor(start)}

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = self.client().query(**request)
        except Exception as exc:
            error = getattr(exc, "response", {}).get("Error", {})
            code = error.get("Code")
            if code == "ValidationException":
                raise QueryError("invalid_parameter", str(error.get("Message"))) from exc
            shown = code or type(exc).__name__  # never the request: it may carry credentials
            raise ReadUnavailable(f"cannot read table {self.config.table}: {shown}") from exc
        return answer

    def _time_value(self, time_us: int) -> dict[str, str]:
        if self.sort.type == "N":
            return {"N": str(time_us // 1000)}
        return {"S": iso8601(time_us)}

    def _event(self, item: dict[str, Any]) -> dict[str, Any]:
        data = {name: from_attribute(value) for name, value in item.items()}
        stamp = data.get(self.sort.name)
        time = iso(int(stamp) * 1000) if isinstance(stamp, int) else stamp
        return {"time": time, "data": data}


def from_attribute(value: dict[str, Any]) -> Any:
    """A DynamoDB attribute value as JSON (numbers exact where JSON allows, binary as base64)."""
    ((kind, inner),) = value.items()
    if kind == "S" or kind == "BOOL":
        return inner
    if kind == "NULL":
        return None
    if kind == "N":
        return _number(inner)
    if kind == "B":
        return base64.b64encode(inner).decode("ascii")
    if kind == "M":
        return {k: from_attribute(v) for k, v in inner.items()}
    if kind == "L":
        return [from_attribute(v) for v in inner]
    if kind == "SS":
        return list(inner)
    if kind == "NS":
        return [_number(n) for n in inner]
    return [base64.b64encode(b).decode("ascii") for b in inner]  # BS


def _number(text: str) -> int | float:
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else float(number)


def _is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite() and text.strip() == text and text != ""
    except ArithmeticError:
        return False


def _key_value(kind: str, text: str, name: str) -> dict[str, Any]:
    if kind == "N":
        if not _is_number(text):
            raise QueryError("invalid_parameter", f"{name} must be a number")
        return {"N": text}
    if kind == "B":
        try:
            return {"B": base64.b64decode(text, validate=True)}
        except binascii.Error as exc:
            raise QueryError("invalid_parameter", f"{name} must be base64") from exc
    return {"S": text}


def _encode_cursor(key: dict[str, Any] | None) -> str | None:
    if key is None:
        return None
    plain = {
        name: {kind: base64.b64encode(v).decode() if kind == "B" else v for kind, v in a.items()}
        for name, a in key.items()
    }
    return base64.urlsafe_b64encode(msgspec.json.encode(plain)).decode().rstrip("=")


def _decode_cursor(text: str, *names: str) -> dict[str, Any]:
    """A cursor this API returned: the key attributes, each one typed value, and no others."""
    try:
        raw = msgspec.json.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(raw, dict) or set(raw) != set(names):
            raise ValueError("not a key")
        key: dict[str, Any] = {}
        for name, attribute in raw.items():
            if not isinstance(attribute, dict) or len(attribute) != 1:
                raise ValueError("not an attribute")
            ((kind, value),) = attribute.items()
            if kind not in _ATTRIBUTE_TYPES or not isinstance(value, str):
                raise ValueError("not a key attribute")
            key[name] = {kind: base64.b64decode(value, validate=True) if kind == "B" else value}
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise QueryError("invalid_cursor", "the cursor is not one this API returned") from exc
    return key


__all__ = ["DynamoReader", "ReadUnavailable", "from_attribute"]
