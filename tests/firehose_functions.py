"""Transformation functions written for Kinesis Firehose, as they exist in the wild (used
unchanged by the python transform tests)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    output = []
    for record in event["records"]:
        payload = json.loads(base64.b64decode(record["data"]).decode("utf-8"))
        if payload.get("action") == "heartbeat":
            output.append(
                {"recordId": record["recordId"], "result": "Dropped", "data": record["data"]}
            )
            continue
        if "callerid" not in payload:
            output.append(
                {
                    "recordId": record["recordId"],
                    "result": "ProcessingFailed",
                    "data": record["data"],
                }
            )
            continue
        payload["caller"] = payload.pop("callerid").upper()
        payload["remaining_ms_positive"] = context.get_remaining_time_in_millis() > 0
        data = base64.b64encode((json.dumps(payload) + "\n").encode("utf-8")).decode("utf-8")
        output.append({"recordId": record["recordId"], "result": "Ok", "data": data})
    print(f"Successfully processed {len(event['records'])} records.")
    return {"records": output}


def slow_on_request(event: dict[str, Any]) -> dict[str, Any]:
    """Sleeps when a record asks to; forgets records marked "forget"; fails on "boom"."""
    out = []
    for record in event["records"]:
        payload = json.loads(base64.b64decode(record["data"]))
        if payload.get("sleep"):
            time.sleep(payload["sleep"])
        if payload.get("boom"):
            raise RuntimeError("boom")
        if payload.get("forget"):
            continue
        out.append({"recordId": record["recordId"], "result": "Ok", "data": record["data"]})
    out.append({"recordId": "not-one-of-mine", "result": "Ok", "data": ""})
    return {"records": out}


def per_record(event: dict[str, Any]) -> dict[str, Any] | None:
    if event.get("drop"):
        return None
    if event.get("fail"):
        raise ValueError("cannot handle this one")
    return {**event, "seen": True}


def apache_log_to_csv(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """In the manner of Firehose's "Apache Log to CSV" blueprint: a log line in, a CSV line out."""
    import re

    pattern = re.compile(r'^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) \S+" (\d{3}) (\d+|-)$')
    output = []
    for record in event["records"]:
        line = json.loads(base64.b64decode(record["data"]))["line"]
        match = pattern.match(line)
        if match is None:
            output.append({"recordId": record["recordId"], "result": "ProcessingFailed",
                           "data": record["data"]})  # fmt: skip
            continue
        csv_line = ",".join(match.groups()) + "\n"
        output.append({"recordId": record["recordId"], "result": "Ok",
                       "data": base64.b64encode(csv_line.encode()).decode()})  # fmt: skip
    return {"records": output}


def log_events_to_lines(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """In the manner of the "CloudWatch Logs Processor" blueprint: one record holding several log
    events becomes their JSON objects, one a line, in one record."""
    output = []
    for record in event["records"]:
        payload = json.loads(base64.b64decode(record["data"]))
        joined = "".join(json.dumps(e) + "\n" for e in payload["logEvents"])
        output.append({"recordId": record["recordId"], "result": "Ok",
                       "data": base64.b64encode(joined.encode()).decode()})  # fmt: skip
    return {"records": output}


def where_am_i(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Adds the request's region and delivery stream, as functions that build clients do."""
    output = []
    for record in event["records"]:
        payload = json.loads(base64.b64decode(record["data"]))
        payload.update(region=event["region"], stream=event["deliveryStreamArn"])
        output.append({"recordId": record["recordId"], "result": "Ok",
                       "data": base64.b64encode(json.dumps(payload).encode()).decode()})  # fmt: skip
    return {"records": output}
