"""boto3 clients as headrace makes them: the region follows the AWS configuration chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.drivers.aws import aws_client


def test_the_region_follows_the_aws_chain_down_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("[default]\nregion = eu-west-3\n\n[profile other]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))

    def region(configured: str | None = None) -> str:
        client = aws_client("s3", endpoint_url=None, region=configured, max_attempts=1)
        return str(client.meta.region_name)

    assert region() == "eu-west-3"  # only in the config file
    monkeypatch.setenv("AWS_PROFILE", "other")
    assert region() == "ap-south-1"  # the named profile's
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert region() == "eu-north-1"
    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    assert region() == "ca-central-1"
    assert region("sa-east-1") == "sa-east-1"  # the sink's own setting wins
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name)
    aws_config.write_text("")
    assert region() == "us-east-1"  # nothing configured anywhere
