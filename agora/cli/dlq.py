"""`agora dlq ...`: inspect and retry dead letters, release parked communities."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from agora.cli.common import (
    EXIT_FAILURE,
    JsonOption,
    ProjectionArg,
    UsageError,
    _check_names,
    _errors,
    _json,
    _open_engine,
    _settings,
    _wide,
    app,
    out,
)

# The engine (SQLAlchemy, the lifecycle) and rich's tables load when a command runs.

dlq_app = typer.Typer(
    help="Inspect and retry dead letters: events a projection set aside.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")


def _letter_fields(row: Any) -> dict[str, Any]:
    first_seen = row.first_seen
    if isinstance(first_seen, datetime):
        if first_seen.tzinfo is None:
            first_seen = first_seen.replace(tzinfo=UTC)
        first_seen = first_seen.isoformat().replace("+00:00", "Z")
    return {
        "projection": row.projection,
        "generation": int(row.generation),
        "seq": int(row.seq),
        "partition": int(row.partition),
        "subject": row.subject,
        "kind": row.kind,
        "error_class": row.error_class,
        "error_message": row.error_message,
        "first_seen": first_seen,
    }


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    projection: Annotated[
        str | None, typer.Argument(metavar="PROJECTION", help="Only this projection.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Letters listed at most.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List dead letters, oldest first: projection, generation, seq, subject, kind, error."""
    from rich.table import Table

    from agora.workers import translate
    from projections import lifecycle
    from projections.status import dead_letter_rows, read_status

    settings = _settings(ctx)
    if projection is not None:
        _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors(), translate("cannot read dead letters"):
            letters = [_letter_fields(r) for r in dead_letter_rows(engine, projection, limit)]
            states = {(r.projection, r.generation): r.generation_state for r in read_status(engine)}
    finally:
        engine.dispose()
    for letter in letters:
        letter["generation_state"] = states.get(
            (letter["projection"], letter["generation"]), lifecycle.GenerationState.DROPPED
        )
    if as_json:
        _json({"dead_letters": letters, "count": len(letters), "limit": limit})
        return
    if not letters:
        out.print("no dead letters")
        return
    table = Table(title="dead letters", title_justify="left")
    for column in ("projection", "gen", "seq", "part", "subject", "kind", "error", "first seen"):
        table.add_column(column)
    for letter in letters:
        table.add_row(
            letter["projection"],
            f"{letter['generation']} ({letter['generation_state']})",
            str(letter["seq"]),
            str(letter["partition"]),
            letter["subject"],
            letter["kind"],
            f"{letter['error_class']}: {letter['error_message']}",
            str(letter["first_seen"]),
        )
    _wide().print(table)
    if len(letters) == limit:
        out.print(f"(first {limit}; --limit shows more)")


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    projection: ProjectionArg,
    seq: Annotated[int, typer.Argument(metavar="SEQ", min=1, help="The letter's stream sequence.")],
    as_json: JsonOption = False,
) -> None:
    """Show one dead letter with its raw payload (as text if UTF-8, else base64)."""
    from rich.table import Table

    from agora.workers import translate
    from projections.status import dead_letter

    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors(), translate():
            row = dead_letter(engine, projection, seq)
    finally:
        engine.dispose()
    letter = _letter_fields(row)
    raw = bytes(row.raw)
    try:
        letter["raw"], letter["raw_encoding"] = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        letter["raw"], letter["raw_encoding"] = base64.b64encode(raw).decode(), "base64"
    letter["raw_bytes"] = len(raw)
    if as_json:
        _json(letter)
        return
    table = Table(
        title=f"dead letter {projection} seq {seq}", show_header=False, title_justify="left"
    )
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in letter.items():
        table.add_row(key, str(value))
    _wide().print(table)


def _release(
    ctx: typer.Context,
    projection: str,
    community: str,
    skip_reason: str | None,
    as_json: bool,
    generation: int | None = None,
) -> None:
    """Retry or skip a parked community (by default of the active generation); exit 1 on failure."""
    from agora.workers import store_of, translate
    from projections import lifecycle

    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors():
            store = store_of(engine, projection)
            with translate(f"cannot release {community} of {projection}"):
                try:
                    active, outcome = lifecycle.release_community(
                        store, community, generation=generation, skip_reason=skip_reason
                    )
                except lifecycle.NotParked as error:
                    raise UsageError(str(error)) from None
    finally:
        engine.dispose()
    if as_json:
        _json(
            {
                "projection": projection,
                "generation": active,
                "community": community,
                "skipped": outcome.skipped,
                "applied": outcome.applied,
                "duplicates": outcome.duplicates,
                "released": outcome.failed_seq is None,
                "failed": None
                if outcome.failed_seq is None
                else {"seq": outcome.failed_seq, "error": outcome.error},
            }
        )
    else:
        skipped = f"skipped seq {outcome.skipped}, " if outcome.skipped is not None else ""
        out.print(
            f"{projection} g{active} community {community}: {skipped}applied "
            f"{len(outcome.applied)}, duplicates {len(outcome.duplicates)}, "
            + ("released" if outcome.failed_seq is None else "still parked"),
            soft_wrap=True,
        )
    if outcome.failed_seq is not None:
        typer.echo(
            f"{community} is parked again at seq {outcome.failed_seq}: {outcome.error}", err=True
        )
        raise typer.Exit(EXIT_FAILURE)


GenerationOption = Annotated[
    int | None,
    typer.Option(
        "--generation",
        min=1,
        help="The parked community's generation, e.g. one being built (default: the active one).",
    ),
]


@dlq_app.command("skip")
def dlq_skip(
    ctx: typer.Context,
    projection: ProjectionArg,
    community: Annotated[str, typer.Argument(metavar="COMMUNITY", help="A parked community.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why the poison event may be skipped (recorded).")
    ],
    generation: GenerationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Skip a parked community's poison event and release its held events, in order.

    The poison event stays a dead letter, of kind ``skipped``, with the reason in its error
    message (``dlq retry --seq`` can still apply it later). If a held event fails, the
    community is parked again at it (exit 1).
    """
    if not reason.strip():
        raise typer.BadParameter("must not be empty", param_hint="--reason")
    _release(ctx, projection, community, reason, as_json, generation)


@dlq_app.command("retry")
def dlq_retry(
    ctx: typer.Context,
    projection: ProjectionArg,
    seqs: Annotated[
        list[int] | None,
        typer.Option("--seq", min=1, help="Retry only this letter (repeatable); default: all."),
    ] = None,
    community: Annotated[
        str | None,
        typer.Option(
            "--community",
            help="Replay this parked community from its poison event, in order, then release it.",
        ),
    ] = None,
    generation: GenerationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-apply the active generation's dead letters after a fix; exit 1 if any still fails.

    Applied letters and those whose event was applied meanwhile (duplicates) are removed; a
    letter that fails again stays, with its new error. A parked community's poison event is
    replayed with its held events, in order; with ``--community`` only that community is, and a
    failure parks it again at the failing event.
    """
    if community is not None:
        if seqs:
            raise typer.BadParameter("--seq and --community exclude each other")
        _release(ctx, projection, community, None, as_json, generation)
        return
    if generation is not None:
        raise typer.BadParameter("--generation goes with --community")
    from agora.workers import store_of, translate
    from projections import lifecycle

    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors():
            store = store_of(engine, projection)
            with translate(f"cannot retry dead letters of {projection}"):
                active, outcome = lifecycle.retry_dead_letters(store, seqs)
    finally:
        engine.dispose()
    if as_json:
        _json(
            {
                "projection": projection,
                "generation": active,
                "applied": outcome.applied,
                "duplicates": outcome.duplicates,
                "failed": [{"seq": s, "error": e} for s, e in sorted(outcome.failed.items())],
            }
        )
    else:
        out.print(
            f"{projection} g{active}: applied {len(outcome.applied)}, duplicates "
            f"{len(outcome.duplicates)}, still failing {len(outcome.failed)}",
            soft_wrap=True,
        )
        for seq, error in sorted(outcome.failed.items()):
            typer.echo(f"seq {seq}: {error}", err=True)
    if outcome.failed:
        raise typer.Exit(EXIT_FAILURE)
