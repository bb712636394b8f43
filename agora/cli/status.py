"""`agora status`: where every projection is: generation, checkpoint, lag, events/s, worker.

The rules (lag, staleness, what is healthy) are :mod:`projections.status`'s; the table is
:mod:`agora.cli.status_view`'s; this module reads, prints and sets the exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
from events.subjects import STREAM

# SQLAlchemy, nats-py and the engine modules load when the command runs, not with the CLI.
if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from projections.status import ParkedRow, StatusRow


def _status_document(
    head: int | None,
    rows: list[StatusRow],
    nats_error: str | None,
    idle: list[str],
    parked: Sequence[ParkedRow] = (),
) -> dict[str, Any]:
    from projections.status import healthy

    stream: dict[str, Any] = {"name": STREAM, "last_seq": head}
    if nats_error is not None:
        stream["error"] = nats_error
    return {
        "stream": stream,
        "partitions": rows,
        "not_started": idle,
        "paused": sum(1 for r in rows if r.paused),
        "stale": sum(1 for r in rows if r.stale_live),
        "parked": [_parked_fields(p) for p in parked],
        "ok": healthy(rows, parked) and nats_error is None,
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
    from agora.workers import translate
    from projections.status import parked_rows

    live = {(r.projection, r.generation) for r in rows if r.live}
    with translate("cannot read parked communities"):
        found = parked_rows(engine, projection)
    return [p for p in found if (p.projection, p.generation) in live]


@app.command()
def status(
    ctx: typer.Context,
    projection: Annotated[
        str | None, typer.Argument(metavar="PROJECTION", help="Only this projection.")
    ] = None,
    wide: Annotated[
        bool,
        typer.Option("--wide", help="One line per partition with every column (over 100 wide)."),
    ] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Show retired generations too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show each projection: generation, checkpoint, lag, events/s, worker, dead letters.

    One line per generation whose partitions agree, else one per partition (--wide: one per
    partition with every column); retired generations only with --all (--json lists them all).
    Lag is in events (stream last seq - checkpoint) and in age (of the oldest event not applied);
    events/s is over the last minute. Parked communities (a poison event holds back that
    community's later events, the others go on) are listed with the failing sequence and the
    error. Exit 1 when a partition of an active or building generation is paused by a fold error,
    has a parked community or a stale worker (its status not written for 30 s: killed or frozen),
    or when NATS cannot be reached (the database part is still shown).
    """
    from agora.workers import projection_status

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
        _print_status(head, rows, idle, wide=wide, show_all=show_all)
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
        where = f"{row.projection} g{row.generation} p{row.partition}"
        if row.paused:
            typer.echo(f"{where} is paused: {row.error}", err=True)
        elif row.stale_live:
            typer.echo(
                f"{where}: worker {row.worker} says {row.worker_state} but has not written its "
                f"status since {row.updated_at} (killed or frozen?)",
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


def _print_status(
    head: int | None,
    rows: list[StatusRow],
    idle: list[str],
    *,
    wide: bool = False,
    show_all: bool = False,
) -> None:
    from agora.cli import status_view

    shown = status_view.visible(rows, show_all)
    if shown:
        if wide:
            _wide().print(status_view.wide_table(head, shown))
        else:
            _wide().print(status_view.compact_table(head, shown, datetime.now(UTC)))
            for r in shown:
                if r.worker_state == "paused" and r.error:
                    out.print(
                        f"{r.projection} g{r.generation} p{r.partition} at checkpoint "
                        f"{r.checkpoint:,} paused: {r.error}",
                        soft_wrap=True,
                    )
    hidden = status_view.hidden_generations(rows, show_all)
    if hidden:
        out.print(f"{hidden} retired generation{'s' if hidden != 1 else ''} not shown (--all)")
    for name in idle:
        out.print(f"{name}: not started (no generation yet; `agora worker` creates it)")
