"""``keys``: issue, list and revoke API keys."""

from __future__ import annotations

from pathlib import Path

import click

from headrace.cli.common import config_option, data_dir_option, load_or_exit


@click.group()
def keys() -> None:
    """Issue, list and revoke API keys for sources with an ``api_key`` authorizer."""


def _parse_rate(value: str | None) -> float | None:
    if value is None:
        return None
    number = value.strip().removesuffix("/s")
    try:
        rate = float(number)
    except ValueError:
        raise click.BadParameter(
            f'"{value}" is not a rate such as 50/s', param_hint="--rate"
        ) from None
    if rate <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--rate")
    return rate


@keys.command("create")
@config_option
@data_dir_option
@click.option("--source", required=True, help="Source the key may send to.")
@click.option("--name", default="", help="Who the key is for (shown in listings).")
@click.option("--rate", help="Requests a second this key may send, e.g. 50/s (default: no limit).")
def keys_create(
    config_path: Path | None, data_dir: Path, source: str, name: str, rate: str | None
) -> None:
    """Issue a key. It is shown once; only its hash is stored."""
    from headrace.authorizers.api_key import ApiKeyAuth
    from headrace.storage.api_keys import KeyStore

    pipeline = load_or_exit(config_path)
    found = pipeline.sources.get(source)
    if found is None:
        raise click.UsageError(
            f'no source named "{source}" (sources: {", ".join(pipeline.sources)})'
        )
    if not any(isinstance(a, ApiKeyAuth) for a in found.auth):
        click.echo(
            f'warning: source "{source}" has no api_key authorizer; the key is not checked yet',
            err=True,
        )
    issued, key = KeyStore(data_dir).create(source, name, _parse_rate(rate))
    click.echo(key)
    click.echo(
        f"key {issued.id} for source {source} ({issued.prefix}…); it will not be shown again",
        err=True,
    )


@keys.command("list")
@data_dir_option
@click.option("--source", help="Only this source's keys.")
def keys_list(data_dir: Path, source: str | None) -> None:
    """List keys (never the keys themselves)."""
    from headrace.query.lake import iso
    from headrace.storage.api_keys import KeyStore

    issued = KeyStore(data_dir).list(source)
    if not issued:
        click.echo("no keys")
        return
    click.echo(
        f"{'ID':>4}  {'SOURCE':<14} {'NAME':<16} {'PREFIX':<11} {'RATE':>7}  {'CREATED':<27} STATE"
    )
    for key in issued:
        state = f"revoked {iso(key.revoked_at_us)}" if key.revoked_at_us else "live"
        rate = f"{key.rate:g}/s" if key.rate else "-"
        click.echo(
            f"{key.id:>4}  {key.source:<14} {key.name:<16} {key.prefix:<11} {rate:>7}  {iso(key.created_at_us):<27} {state}"
        )


@keys.command("revoke")
@data_dir_option
@click.argument("key_id", type=int)
def keys_revoke(data_dir: Path, key_id: int) -> None:
    """Revoke a key; ingest refuses it within seconds."""
    from headrace.storage.api_keys import KeyStore

    if not KeyStore(data_dir).revoke(key_id):
        raise click.UsageError(f"no live key with id {key_id}")
    click.echo(f"key {key_id} revoked")
