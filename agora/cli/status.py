"""`agora status`: every projection partition's generation, checkpoint, lag and worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.engine import Engine

from agora.cli.common import (
    EXIT_FAILURE,
    JsonOption,
    _check_names,
    _errors,
    _json,
    _open_engine,
    _run,
    _settings,
    _wide,
    app,
    out,
)
from agora.registry import known_names
from agora.workers import (
    LIVE_STATES,
    StatusRow,
    projection_status,
    translate,
)
from events.subjects import STREAM
from projections.status import (
    ParkedRow,
    parked_rows,
)

if TYPE_CHECKING:
    pass


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _status_document(
    head: int | None,
    rows: list[StatusRow],
    nats_error: str | None,
    idle: list[str],
    parked: Sequence[ParkedRow] = (),
) -> dict[str, Any]:
    stream: dict[str, Any] = {"name": STREAM, "last_seq": head}
    if nats_error is not None:
        stream["error"] = nats_error
    paused = sum(1 for r in rows if r.paused)
    return {
        "stream": stream,
        "partitions": rows,
        "not_started": idle,
        "paused": paused,
        "parked": [_parked_fields(p) for p in parked],
        "ok": not paused and not parked and nats_error is None,
    }


def _parked_fields(row: ParkedRow) -> dict[str, Any]:
    return {
        "projection": row.projection,
        "generation": row.generation,
        "partition": row.partition,
        "community": row.community,
        "first_seq": row.first_seq,
        "error": row.error,
        "since": row.since.isoformat().replace("+00:00", "Z"),
        "occurred_at": row.occurred_at.isoformat().replace("+00:00", "Z"),
        "held": row.held,
    }


def _live_parked(engine: Engine, rows: list[StatusRow], projection: str | None) -> list[ParkedRow]:
    """Parked communities of active or building generations."""
    live = {(r.projection, r.generation) for r in rows if r.generation_state in LIVE_STATES}
    with translate("cannot read parked communities"):
        found = parked_rows(engine, projection)
    return [p for p in found if (p.projection, p.generation) in live]


def _worker_cell(row: StatusRow) -> str:
    if row.worker_state is None:
        return "-"
    text = row.worker_state
    if row.stale:
        text += " (stale)"
    if row.worker_state == "paused" and row.error:
        text += f": {row.error}"
    return text


@app.command()
def status(
    ctx: typer.Context,
    projection: Annotated[
        str | None, typer.Argument(metavar="PROJECTION", help="Only this projection.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show each projection partition: generation, checkpoint, lag, rate, worker, dead letters.

    Lag is in events (stream last seq - checkpoint) and in seconds (the age of the oldest event
    not applied). Parked communities (a poison event holds back that community's later events,
    the others go on) are listed with the failing sequence and the error. Exit 1 when a partition
    of an active or building generation is paused by a fold error or has a parked community, or
    when NATS cannot be reached (the database part is still shown).
    """
    settings = _settings(ctx)
    if projection is not None:
        _check_names([projection])
    engine = _open_engine(settings)
    try:
        head, rows, nats_error = _run(projection_status(settings, engine, projection))
        with _errors():
            parked = _live_parked(engine, rows, projection)
    finally:
        engine.dispose()
    started = {r.projection for r in rows}
    idle = [n for n in ([projection] if projection else known_names()) if n not in started]
    document = _status_document(head, rows, nats_error, idle, parked)
    if as_json:
        _json(document)
    else:
        _print_status(head, rows, idle)
        for p in parked:
            out.print(
                f"{p.projection} g{p.generation} p{p.partition}: community {p.community} parked "
                f"at seq {p.first_seq} (event time {_parked_fields(p)['occurred_at']}), "
                f"{p.held:,} later events held: {p.error}",
                soft_wrap=True,
            )
    if nats_error is not None:
        typer.echo(f"error: stream lag unknown: {nats_error}", err=True)
    for row in rows:
        if row.paused:
            typer.echo(
                f"{row.projection} g{row.generation} p{row.partition} is paused: {row.error}",
                err=True,
            )
    for p in parked:
        typer.echo(
            f"{p.projection} g{p.generation}: community {p.community} is parked at seq "
            f"{p.first_seq}: {p.error} (after a fix: agora dlq retry {p.projection} "
            f"--community {p.community})",
            err=True,
        )
    if not document["ok"]:
        raise typer.Exit(EXIT_FAILURE)


def _print_status(head: int | None, rows: list[StatusRow], idle: list[str]) -> None:
    where = f"last seq {head:,}" if head is not None else "unreachable"
    table = Table(title=f"projections (stream {STREAM}: {where})", title_justify="left")
    for column, justify in (
        ("projection", "left"),
        ("gen", "right"),
        ("version", "right"),
        ("state", "left"),
        ("part", "right"),
        ("checkpoint", "right"),
        ("lag", "right"),
        ("lag age", "right"),
        ("events/s", "right"),
        ("worker", "left"),
        ("dead letters", "right"),
        ("updated", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.projection,
            str(r.generation),
            str(r.version),
            r.generation_state,
            str(r.partition),
            f"{r.checkpoint:,}",
            f"{r.lag_events:,}" if r.lag_events is not None else "-",
            _seconds(r.lag_seconds),
            f"{r.rate:.1f}" if r.rate is not None else "-",
            _worker_cell(r),
            str(r.dead_letters),
            r.updated_at or "-",
        )
    if rows:
        _wide().print(table)
    for name in idle:
        out.print(f"{name}: not started (no generation yet; `agora worker` creates it)")
