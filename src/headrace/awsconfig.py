"""The region of the AWS configuration chain, read without boto3 (an optional extra).

The order is the SDKs': ``AWS_REGION``, then ``AWS_DEFAULT_REGION``, then the ``region`` of the
profile (``AWS_PROFILE``, else ``default``) in the config file (``AWS_CONFIG_FILE``, else
``~/.aws/config``).
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path


def configured_region() -> str | None:
    """The region the AWS configuration names, or ``None`` if it names none."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(name):
            return os.environ[name]
    path = Path(os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")
    profile = os.environ.get("AWS_PROFILE") or "default"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    section = "default" if profile == "default" else f"profile {profile}"
    region = parser.get(section, "region", fallback=None) if parser.has_section(section) else None
    return region.strip() or None if region else None


__all__ = ["configured_region"]
