"""What an ``s3`` sink wrote, read back from a bucket (any S3-compatible endpoint) or from a
local directory, decoded.

Objects are Parquet (``.parquet``) or gzip NDJSON (``.json.gz``). Keys that start with one of
Firehose's error output types (``format-conversion-failed/``, ``partitioning-failed/``,
``processing-failed/``, the default ``error_prefix``) hold failed records in Firehose's error
format; every other key holds data.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

ERROR_OUTPUTS = ("format-conversion-failed", "partitioning-failed", "processing-failed")


class ObjectListing(Protocol):
    """Somewhere objects are: key → bytes."""

    def objects(self) -> dict[str, bytes]:
        """Every complete object, by key."""


@dataclass(frozen=True)
class BucketObjects:
    """The objects of ``bucket`` at ``endpoint_url`` (read directly, not through a proxy)."""

    endpoint_url: str
    bucket: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def create(self) -> None:
        """Make the bucket."""
        self.client().create_bucket(Bucket=self.bucket)

    def objects(self) -> dict[str, bytes]:
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                found[key] = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return found


@dataclass(frozen=True)
class DirectoryObjects:
    """The objects under ``root`` (hidden files, an upload in progress, are not objects)."""

    root: Path

    def objects(self) -> dict[str, bytes]:
        if not self.root.is_dir():
            return {}
        return {
            path.relative_to(self.root).as_posix(): path.read_bytes()
            for path in sorted(self.root.rglob("*"))
            if path.is_file() and not path.name.startswith(".")
        }


def is_error_output(key: str) -> bool:
    """Whether ``key`` holds failed records (under one of the error output types)."""
    return key.split("/", 1)[0] in ERROR_OUTPUTS


def lines_of(body: bytes) -> list[bytes]:
    """The records of a gzip NDJSON object, as bytes (no newline)."""
    return gzip.decompress(body).splitlines()


def parquet_records(body: bytes) -> list[dict[str, Any]]:
    """The rows of a Parquet object, each as a dict of its columns."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


def data_objects(listing: ObjectListing) -> dict[str, bytes]:
    """The objects holding data."""
    return {k: v for k, v in listing.objects().items() if not is_error_output(k)}


def error_records(listing: ObjectListing) -> list[dict[str, Any]]:
    """Every failed record (Firehose's error format: ``eventId``, ``errorCode``, ...), with the
    key of its object as ``_key``."""
    found = []
    for key, body in listing.objects().items():
        if is_error_output(key):
            found += [{**json.loads(line), "_key": key} for line in lines_of(body)]
    return found


__all__ = [
    "ERROR_OUTPUTS",
    "BucketObjects",
    "DirectoryObjects",
    "ObjectListing",
    "data_objects",
    "error_records",
    "is_error_output",
    "lines_of",
    "parquet_records",
]
