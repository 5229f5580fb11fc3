"""The ``dynamodb`` sink: one item per event, written with BatchWriteItem.

Type mapping: strings S, numbers N (ints exactly, floats through their shortest decimal text,
never through binary floating point), booleans BOOL, null NULL, objects M, arrays L, and the
``binary_fields`` (base64 text) B. An item is written whole (PutItem semantics): redelivering an
event rewrites the same item. Refused one by one, to the dead-letter store: an event without its
key attributes (``missing_key``), one over DynamoDB's 400 KB item limit (``item_too_large``),
a number DynamoDB cannot hold or bad base64 (``unsupported_value``), and an item the service
refuses as invalid (``rejected``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from headrace.drivers.aws import aws_client, error_code, translate
from headrace.errors import TransientSinkError
from headrace.retry import RetryPolicy
from headrace.sinks.base import APPEND, MERGE, READ
from headrace.sinks.dynamodb.config import DynamoDBConfig as DynamoConfig
from headrace.storage.state import Checkpoint
from headrace.types import Event, FailedRecord, WriteResult

log = logging.getLogger("headrace.sinks.dynamodb")
MAX_ITEM_BYTES = 400 * 1024
BATCH_ITEMS = 25
UNPROCESSED_RETRY = RetryPolicy(initial=0.1, maximum=5.0)
"""The waits before items DynamoDB left unprocessed (throttled) are sent again."""


class Unsupported(ValueError):
    """A value DynamoDB cannot store."""


def _number(value: int | float) -> dict[str, str]:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unsupported(f"{value} is not a number DynamoDB can store")
        text = repr(value)  # the shortest text that reads back as the same float
    else:
        text = str(value)
    try:
        digits = Decimal(text).normalize()
    except InvalidOperation as exc:
        raise Unsupported(f"{text} is not a number") from exc
    if len(digits.as_tuple().digits) > 38:
        raise Unsupported(f"{text} has more than 38 significant digits")
    if digits != 0 and not (-130 <= digits.adjusted() <= 125):
        raise Unsupported(f"{text} is out of DynamoDB's number range")
    return {"N": text}


def to_attribute(value: Any) -> dict[str, Any]:
    """A JSON value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, Decimal):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, dict):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [to_attribute(v) for v in value]}
    raise Unsupported(f"{type(value).__name__} values cannot be stored")


def attribute_size(attribute: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for a value (its documented sizing rules)."""
    ((kind, value),) = attribute.items()
    if kind == "S":
        return len(value.encode())
    if kind == "B":
        return len(value)
    if kind == "N":
        digits = len(value.lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in value.items())
    return 3 + sum(attribute_size(v) + 1 for v in value)  # L


def item_size(item: dict[str, dict[str, Any]]) -> int:
    """Bytes DynamoDB counts for an item."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


class DynamoDBSink:
    """See the module docstring."""

    capabilities = frozenset({APPEND, MERGE, READ})
    commits_checkpoint = False

    def __init__(self, sink_id: str, config: DynamoConfig, data_dir: Path) -> None:
        self.id = sink_id
        self.config = config
        self.client: Any = None
        self._error: str | None = None
        self.keys = [config.partition_key] + ([config.sort_key] if config.sort_key else [])

    def open(self) -> None:
        """Connect and check the table exists (create it if asked)."""
        config = self.config
        self.client = aws_client(
            "dynamodb",
            endpoint_url=config.endpoint_url,
            region=config.region,
            max_attempts=config.max_attempts,
        )
        try:
            self.client.describe_table(TableName=config.table)
            return
        except Exception as exc:
            code = error_code(exc)
            if code != "ResourceNotFoundException":
                raise translate(exc, f"table {config.table} is not usable") from exc
            if not config.create_table:
                raise TransientSinkError(
                    f"table {config.table} does not exist (create it, or set create_table: true)"
                ) from exc
        try:
            self.client.create_table(
                TableName=config.table,
                KeySchema=[
                    {"AttributeName": k.name, "KeyType": kind}
                    for k, kind in zip(self.keys, ("HASH", "RANGE"), strict=False)
                ],
                AttributeDefinitions=[
                    {"AttributeName": k.name, "AttributeType": k.type} for k in self.keys
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            self.client.get_waiter("table_exists").wait(
                TableName=config.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
        except Exception as exc:
            code = error_code(exc)
            if code != "ResourceInUseException":  # created meanwhile by someone else
                raise translate(exc, f"cannot create table {config.table}") from exc
        log.info("dynamodb %s: created table %s", self.id, config.table)

    def close(self) -> None:
        """Nothing to release (boto3 pools its connections)."""
        self.client = None

    def health(self) -> str | None:
        """Why the last write failed, or ``None``."""
        return self._error

    def maintain(self) -> None:
        """No background work."""

    def item_of(self, event: Event) -> dict[str, Any]:
        """The event as an item; ``Unsupported`` / ``KeyError`` say why it cannot be one."""
        data = dict(event.data)
        for name in self.config.binary_fields:
            value = data.get(name)
            if isinstance(value, str):
                try:
                    data[name] = base64.b64decode(value, validate=True)
                except binascii.Error as exc:
                    raise Unsupported(f'field "{name}" is not base64') from exc
        item = {str(k): to_attribute(v) for k, v in data.items()}
        for key in self.keys:
            attribute = item.get(key.name)
            if attribute is None or key.type not in attribute or attribute[key.type] in ("", b""):
                kind = {"S": "a non-empty string", "N": "a number", "B": "binary"}[key.type]
                raise KeyError(f'key attribute "{key.name}" must be {kind}')
        return item

    def write(self, events: list[Event], checkpoint: Checkpoint) -> WriteResult:
        """Put every event's item; see the module docstring."""
        failed: list[FailedRecord] = []
        latest: dict[tuple[Any, ...], tuple[Event, dict[str, Any]]] = {}
        for event in events:
            try:
                item = self.item_of(event)
            except KeyError as exc:
                failed.append(FailedRecord(event, "missing_key", str(exc.args[0])))
                continue
            except Unsupported as exc:
                failed.append(FailedRecord(event, "unsupported_value", str(exc)))
                continue
            size = item_size(item)
            if size > MAX_ITEM_BYTES:
                failed.append(FailedRecord(event, "item_too_large",
                                           f"the item is {size} bytes; DynamoDB takes at most {MAX_ITEM_BYTES}"))  # fmt: skip
                continue
            # one request may not name a key twice: the later event wins, as it would in turn
            key = tuple(str(item[k.name]) for k in self.keys)
            latest.pop(key, None)
            latest[key] = (event, item)
        # a replayed or resent event (its id from outside) never overwrites an item: the table
        # may hold a later event's item by now, which the replay must not put back in time
        pending = [pair for pair in latest.values() if not pair[0].may_repeat]
        repeats = [pair for pair in latest.values() if pair[0].may_repeat]
        try:
            for start in range(0, len(pending), BATCH_ITEMS):
                failed.extend(self._put_batch(pending[start : start + BATCH_ITEMS]))
            failed.extend(self._put_one_by_one(repeats, only_new=True))
        except TransientSinkError as exc:
            self._error = str(exc)
            raise
        self._error = None
        return WriteResult(failed)

    def _put_batch(self, chunk: list[tuple[Event, dict[str, Any]]]) -> list[FailedRecord]:
        requests = [{"PutRequest": {"Item": item}} for _event, item in chunk]
        table = self.config.table
        for attempt in range(self.config.max_attempts):
            try:
                answer = self.client.batch_write_item(RequestItems={table: requests})
            except Exception as exc:
                code = error_code(exc)
                if code == "ValidationException":
                    return self._put_one_by_one(chunk)
                # throttling and 5xx were retried already, by botocore (aws_client's standard
                # mode, max_attempts): this loop only takes up what the table left unprocessed
                raise translate(exc, f"cannot write to table {table}") from exc
            requests = answer.get("UnprocessedItems", {}).get(table, [])
            if not requests:
                return []
            time.sleep(UNPROCESSED_RETRY.delay(attempt + 1))
        raise TransientSinkError(
            f"table {table}: {len(requests)} item(s) still unprocessed after "
            f"{self.config.max_attempts} attempts"
        )

    def _put_one_by_one(
        self, chunk: list[tuple[Event, dict[str, Any]]], *, only_new: bool = False
    ) -> list[FailedRecord]:
        """Put items one at a time (``only_new``: only where the key holds no item yet)."""
        failed = []
        condition = (
            {"ConditionExpression": "attribute_not_exists(#k)",
             "ExpressionAttributeNames": {"#k": self.config.partition_key.name}}
            if only_new else {}
        )  # fmt: skip
        for event, item in chunk:
            try:
                self.client.put_item(TableName=self.config.table, Item=item, **condition)
            except Exception as exc:
                response = getattr(exc, "response", {})
                code = response.get("Error", {}).get("Code")
                if code == "ConditionalCheckFailedException":
                    continue  # the key holds an item already: the replay adds nothing
                if code != "ValidationException":
                    raise translate(exc, f"cannot write to table {self.config.table}") from exc
                failed.append(
                    FailedRecord(event, "rejected", str(response["Error"].get("Message")))
                )
        return failed


def healthcheck(config: DynamoConfig) -> str | None:
    """Whether the table exists (or may be created); nothing is written."""
    try:
        client = aws_client("dynamodb", endpoint_url=config.endpoint_url, region=config.region,
                            max_attempts=1)  # fmt: skip
        client.describe_table(TableName=config.table)
    except TransientSinkError as exc:
        return str(exc)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException" and config.create_table:
            return None  # created when the sink opens
        return str(translate(exc, f"table {config.table} is not usable"))
    return None


__all__ = ["DynamoDBSink", "attribute_size", "item_size", "to_attribute"]
