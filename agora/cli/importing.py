"""`agora import ...`: bring a community's history into the stream."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agora.cli.common import _json, _run, _settings, app
from agora.config import Settings
from agora.errors import AgoraError

# The importer and nats-py (through agora.stack) load when the import runs, not with the CLI.
if TYPE_CHECKING:
    from services.stackexchange.importer import ImportProgress, ImportSummary

import_app = typer.Typer(no_args_is_help=True, help="Import a community's history as events.")
app.add_typer(import_app, name="import")


async def run_stackexchange_import(
    settings: Settings, directory: Path, community: str, *, show_progress: bool = True
) -> ImportSummary:
    """Start the stack, make sure the stream exists, import the dump; return the summary."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from agora.stack import Stack
    from services.errors import ServiceError
    from services.stackexchange.importer import import_stackexchange

    async with Stack(settings) as stack:
        await stack.ensure_stream()
        console = Console(stderr=True)
        with Progress(
            TextColumn("import"),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not show_progress or not console.is_terminal,
        ) as bar:
            task = bar.add_task("import", total=None, line="")

            def on_progress(p: ImportProgress) -> None:
                rate = p.published / p.seconds if p.seconds else 0.0
                bar.update(
                    task,
                    line=f"{p.published:,} events ({p.stored:,} stored, {p.duplicate:,} "
                    f"duplicate, {p.failed:,} failed) · {rate:,.0f}/s",
                )

            try:
                return await import_stackexchange(
                    directory, stack.publisher(), community, progress=on_progress
                )
            except ServiceError as error:
                raise AgoraError(str(error)) from error


def summary_document(summary: ImportSummary) -> dict[str, Any]:
    """The summary as a JSON-able document."""
    return {
        "community": summary.community,
        "complete": summary.complete,
        "events": dict(summary.events),
        "stored": summary.stored,
        "duplicate": summary.duplicate,
        "failed": summary.failed,
        "failure_reasons": dict(summary.failure_reasons),
        "skipped_rows": {f"{file}: {reason}": n for (file, reason), n in summary.skipped.items()},
        "seconds": round(summary.seconds, 2),
    }


@import_app.command("stackexchange")
def stackexchange(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="The dump: Users.xml, Posts.xml, ...")],
    community: Annotated[
        str, typer.Option(help="Agora community id the dump becomes (a subject token).")
    ] = "beer",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import a Stack Exchange data dump with its original times (idempotent: derived ids)."""
    settings = _settings(ctx)
    summary = _run(run_stackexchange_import(settings, directory, community))
    document = summary_document(summary)
    if as_json:
        _json(document)
    else:
        typer.echo(
            f"imported {sum(summary.events.values()):,} events of {community} in "
            f"{summary.seconds:.1f} s: stored {summary.stored:,}, duplicate "
            f"{summary.duplicate:,}, failed {summary.failed:,}; "
            f"{sum(summary.skipped.values()):,} dump rows skipped (see docs/import.md)"
        )
        for reason, n in summary.failure_reasons.items():
            typer.echo(f"  failed: {n} x {reason}", err=True)
    if summary.failed or not summary.complete:
        raise typer.Exit(1)
