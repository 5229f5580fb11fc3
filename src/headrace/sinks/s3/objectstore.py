"""Where object-store sinks put whole objects: S3 (or any S3-compatible server) or a directory.

Both make an object visible only once it is complete: S3 does so for a single PUT and for a
completed multipart upload (an upload that fails is aborted), the directory store writes a hidden
temporary file, fsyncs it and renames it. S3 calls are retried by botocore's ``standard`` mode on
throttling (SlowDown, 503), 5xx and connection errors, with backoff; what still fails is raised as
``TransientSinkError``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

from headrace.drivers.aws import aws_client, translate
from headrace.errors import TransientSinkError
from headrace.sinks.parquet import fsync_path


class ObjectStore(Protocol):
    """A flat namespace of keys holding whole objects."""

    def check(self) -> None:
        """Raise ``TransientSinkError`` if objects cannot be written."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing any object there)."""

    def describe(self, key: str) -> str:
        """Where ``key`` is, for logs."""


def _check_key(key: str) -> None:
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")[:-1]):
        raise ValueError(f"unsafe object key {key!r}")


class DirectoryStore:
    """A local directory as an object store (keys are relative paths)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransientSinkError(f"cannot create {self.root}: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise TransientSinkError(f"{self.root} is not writable")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        _check_key(key)
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            fsync_path(tmp)
            os.replace(tmp, path)
            fsync_path(path.parent)
        except OSError as exc:
            raise TransientSinkError(f"cannot write {path}: {exc}") from exc

    def describe(self, key: str) -> str:
        return str(self.root / key)


class S3Store:
    """A bucket of an S3-compatible store; see the module docstring."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str | None,
        max_attempts: int,
        multipart_threshold: int,
        part_size: int,
    ) -> None:
        self.bucket = bucket
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.client = aws_client(
            "s3", endpoint_url=endpoint_url, region=region, max_attempts=max_attempts
        )
        self.multipart_uploads = 0

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise translate(exc, f"bucket {self.bucket} is not usable") from exc

    def put(self, key: str, data: bytes, content_type: str) -> None:
        _check_key(key)
        try:
            if len(data) >= self.multipart_threshold:
                self._multipart(key, data, content_type)
            else:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
                )
        except TransientSinkError:
            raise
        except Exception as exc:
            raise translate(exc, f"cannot put s3://{self.bucket}/{key}") from exc

    def _multipart(self, key: str, data: bytes, content_type: str) -> None:
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, len(data), self.part_size), start=1):
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data[start : start + self.part_size],
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            self.multipart_uploads += 1
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


__all__ = ["DirectoryStore", "ObjectStore", "S3Store"]
