"""boto3's exceptions and clients, as headrace uses them (s3 and dynamodb sinks, DynamoDB reads).

A client retries throttling, 5xx and connection errors itself (botocore's ``standard`` mode, up to
``max_attempts``); what still fails is translated here into a ``TransientSinkError`` naming the
service's error code and message, never the credentials.
"""

from __future__ import annotations

import os
from typing import Any

from headrace.errors import TransientSinkError


def aws_client(
    service: str, *, endpoint_url: str | None, region: str | None, max_attempts: int
) -> Any:
    """A boto3 client with standard retries (throttling, 5xx, connection errors), in ``region``,
    else the AWS configuration's (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's), else
    us-east-1."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # an optional extra
        raise TransientSinkError(
            f"the {service} sink needs boto3: pip install 'headrace[aws]'"
        ) from exc
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=10,
        read_timeout=60,
    )
    session = boto3.session.Session()
    # the session's region is botocore's chain (AWS_DEFAULT_REGION, then the profile's region
    # in the config file); AWS_REGION, which the other AWS SDKs read and botocore does not,
    # overrides it as it does there
    region = region or os.environ.get("AWS_REGION") or session.region_name or "us-east-1"
    return session.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=region,
        config=config,
    )


def error_code(exc: Exception) -> str | None:
    """The service's error code of a boto error (``ValidationException``...), if it has one."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def translate(exc: Exception, what: str) -> TransientSinkError:
    """A boto error as a ``TransientSinkError`` whose text names the code (never credentials)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return TransientSinkError(f"{what}: {error.get('Code')} ({status}): {error.get('Message')}")
    return TransientSinkError(f"{what}: {type(exc).__name__}: {exc}")


__all__ = ["aws_client", "error_code", "translate"]
