"""Standard Webhooks secrets (``whsec_`` + base64): what headrace checks incoming signatures with
(the ``hmac`` authorizer's ``standard-webhooks`` preset) and signs its own notifications with."""

from __future__ import annotations

import base64
import binascii


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``ValueError`` if it is not base64 of 16+ bytes."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a standard-webhooks secret is whsec_ followed by base64") from exc
    if len(key) < 16:
        raise ValueError("a standard-webhooks secret must hold at least 16 bytes")
    return key


__all__ = ["secret_key"]
