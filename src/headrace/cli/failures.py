"""The kept failures: ``dlq`` (events a sink refused for good) and ``badrows`` (refused at
ingest): list, show, replay."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from headrace.cli.common import (
    buffer_errors,
    config_option,
    data_dir_option,
    load_or_exit,
    state_conn,
)


class _Kept(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def replayed_at_us(self) -> int | None: ...


K = TypeVar("K", bound=_Kept)


def _pending(
    ids: tuple[int, ...], get: Callable[[int], K | None], after: Callable[[int], list[K]]
) -> list[K]:
    """The failures to replay: those of ``ids`` not replayed yet, else every page ``after``
    lists (the filters' pending failures, oldest first)."""
    if ids:
        return [row for i in ids if (row := get(i)) is not None and row.replayed_at_us is None]
    rows: list[K] = []
    while batch := after(rows[-1].id if rows else 0):
        rows.extend(batch)
    return rows


@click.group()
def dlq() -> None:
    """Inspect and replay the dead-letter store (events a sink refused for good)."""


@dlq.command("list")
@data_dir_option
@click.option("--sink", help="Only this sink's dead letters.")
@click.option("--reason", help="Only this reason (e.g. type_mismatch).")
@click.option("--all", "include_replayed", is_flag=True, help="Include those already replayed.")
@click.option("--limit", default=100, show_default=True, help="Most rows to show.")
def dlq_list(
    data_dir: Path, sink: str | None, reason: str | None, include_replayed: bool, limit: int
) -> None:
    """List dead letters, oldest first."""
    from headrace.query.lake import iso
    from headrace.storage.state import list_dead_letters

    conn = state_conn(data_dir)
    rows = list_dead_letters(
        conn, sink=sink, reason=reason, include_replayed=include_replayed, limit=limit
    )
    if not rows:
        click.echo("no dead letters")
        return
    click.echo(
        f"{'ID':>6}  {'SINK':<12} {'REASON':<18} {'ATTEMPTS':>8}  {'FAILED AT':<27} EVENT / ERROR"
    )
    for row in rows:
        click.echo(
            f"{row.id:>6}  {row.sink:<12} {row.reason:<18} {row.attempts:>8}  "
            f"{iso(row.failed_at_us):<27} {row.event_id} {row.error[:80]}"
        )


@dlq.command("show")
@data_dir_option
@click.argument("dead_letter_id", type=int)
def dlq_show(data_dir: Path, dead_letter_id: int) -> None:
    """Show one dead letter in full, with the original event."""
    import msgspec

    from headrace.query.lake import iso
    from headrace.storage.state import get_dead_letter

    row = get_dead_letter(state_conn(data_dir), dead_letter_id)
    if row is None:
        raise click.UsageError(f"no dead letter with id {dead_letter_id}")
    info: dict[str, Any] = {
        "id": row.id,
        "sink": row.sink,
        "reason": row.reason,
        "error": row.error,
        "attempts": row.attempts,
        "event_id": row.event_id,
        "stream": row.stream,
        "source": row.source,
        "received_at": iso(row.received_at_us),
        "failed_at": iso(row.failed_at_us),
        "replayed_at": iso(row.replayed_at_us),
        "event": msgspec.json.decode(row.data),
    }
    click.echo(msgspec.json.format(msgspec.json.encode(info), indent=2).decode())


@dlq.command("replay")
@config_option
@data_dir_option
@click.option("--sink", help="Only this sink's dead letters.")
@click.option("--reason", help="Only this reason.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (repeatable).")
def dlq_replay(
    config_path: Path | None, data_dir: Path, sink: str | None, reason: str | None,
    ids: tuple[int, ...],
) -> None:  # fmt: skip
    """Send dead letters back to the sink that refused them (e.g. after fixing its schema)."""
    from headrace.buffer import opened_buffer
    from headrace.buffer.records import dead_letter_requests
    from headrace.storage.state import get_dead_letter, list_dead_letters, mark_replayed

    conn = state_conn(data_dir)
    letters = _pending(
        ids,
        lambda i: get_dead_letter(conn, i),
        lambda after: list_dead_letters(
            conn, sink=sink, reason=reason, limit=10_000, after_id=after
        ),
    )
    if not letters:
        click.echo("nothing to replay")
        return
    with opened_buffer(load_or_exit(config_path).buffer, data_dir) as buffer, buffer_errors():
        buffer.requeue(dead_letter_requests(letters))
    count = len(letters)
    mark_replayed(conn, letters)
    click.echo(f"queued {count} dead letter(s) for delivery")


@click.group()
def badrows() -> None:
    """Inspect and replay refused events and requests (schema, decode and size refusals)."""


def _badrow_store(data_dir: Path) -> Any:
    from headrace.storage.badrows import BadRowStore

    if not (data_dir / "badrows.db").exists():
        raise click.UsageError(f"no bad rows in {data_dir}")
    return BadRowStore(data_dir)


@badrows.command("list")
@data_dir_option
@click.option("--source", help="Only this source's bad rows.")
@click.option("--reason", help="Only this reason (schema_violation, decode_error, size_violation).")
@click.option("--all", "include_replayed", is_flag=True, help="Include those already replayed.")
@click.option("--limit", default=100, show_default=True, help="Most rows to show.")
def badrows_list(
    data_dir: Path, source: str | None, reason: str | None, include_replayed: bool, limit: int
) -> None:
    """List bad rows, oldest first."""
    from headrace.query.lake import iso

    rows = _badrow_store(data_dir).find(
        source=source, reason=reason, include_replayed=include_replayed, limit=limit
    )
    if not rows:
        click.echo("no bad rows")
        return
    click.echo(
        f"{'ID':>6}  {'SOURCE':<14} {'REASON':<17} {'RECEIVED AT':<27} {'BYTES':>7}  WHERE / WHY"
    )
    for row in rows:
        click.echo(
            f"{row.id:>6}  {row.source:<14} {row.reason:<17} {iso(row.received_at_us):<27} "
            f"{row.raw_bytes:>7}  {row.path or '-'} {row.message[:70]}"
        )


@badrows.command("show")
@data_dir_option
@click.argument("row_id", type=int)
def badrows_show(data_dir: Path, row_id: int) -> None:
    """Show one bad row with its raw bytes (as text)."""
    import msgspec

    row = _badrow_store(data_dir).get(row_id)
    if row is None:
        raise click.UsageError(f"no bad row with id {row_id}")
    info = row.as_dict()
    with contextlib.suppress(msgspec.DecodeError, UnicodeDecodeError):  # JSON when it is JSON
        info["raw"] = msgspec.json.decode(row.raw)
    click.echo(msgspec.json.format(msgspec.json.encode(info), indent=2).decode())


@badrows.command("replay")
@config_option
@data_dir_option
@click.option("--source", help="Only this source's bad rows.")
@click.option("--reason", help="Only this reason.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these rows (repeatable).")
def badrows_replay(
    config_path: Path | None, data_dir: Path, source: str | None, reason: str | None,
    ids: tuple[int, ...],
) -> None:  # fmt: skip
    """Check bad rows again with the current pipeline and deliver what now passes.

    Rows whose every event passes are marked replayed; replaying a row again never stores an
    event twice.
    """
    from headrace.ingest.badrows import replay_bad_rows

    pipeline = load_or_exit(config_path)
    store = _badrow_store(data_dir)
    rows = _pending(
        ids,
        store.get,
        lambda after: store.find(source=source, reason=reason, after_id=after, limit=10_000),
    )
    if not rows:
        click.echo("nothing to replay")
        return
    with buffer_errors():
        outcome = replay_bad_rows(data_dir, pipeline, rows)
    store.mark_replayed(outcome.rows or [])
    click.echo(
        f"queued {outcome.events} event(s) from {len(rows)} bad row(s); "
        f"{outcome.still_bad} row(s) still fail; {outcome.skipped} skipped (truncated or no such source)"
    )
