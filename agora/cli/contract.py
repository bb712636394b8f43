"""`agora schema`, `agora config`, `agora publish`: the event contract and the settings."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import msgspec
import typer

from agora.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    JsonOption,
    _fail,
    _json,
    _run,
    _settings,
    app,
    log,
    out,
)
from agora.config import DEFAULT_DEMO_DATA, Settings, default_demo_data, env_name, sources
from events.catalogue import Event
from events.codec import check_clock_skew, validate_json
from events.errors import EventError
from events.schema import event_schemas, union_schema

# nats-py (through agora.stack and the publisher) loads when `publish` runs, not with the CLI.
if TYPE_CHECKING:
    from events.publisher import Publisher, PublishResult


# -- schema, config ----------------------------------------------------------------------------


def _schema_text(document: dict[str, Any]) -> str:
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n"


@app.command()
def schema(
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write <type>.json per event type and event.json (the union) into this folder.",
            file_okay=False,
        ),
    ] = None,
    asyncapi: Annotated[
        bool,
        typer.Option(
            "--asyncapi",
            help="Print the AsyncAPI 3.0 document of every subject instead (docs/asyncapi.json).",
        ),
    ] = False,
) -> None:
    """Export the event contract as JSON Schema (the union on stdout without --out)."""
    if asyncapi:
        if out_dir is not None:
            raise typer.BadParameter("--asyncapi prints to stdout; it takes no --out")
        from agora.asyncapi import render_asyncapi  # imports the ingest service

        sys.stdout.write(render_asyncapi())
        return
    if out_dir is None:
        sys.stdout.write(_schema_text(union_schema()))
        return
    documents = {f"{type_}.json": s for type_, s in event_schemas().items()}
    documents["event.json"] = union_schema()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, document in documents.items():
            (out_dir / name).write_text(_schema_text(document))
    except OSError as error:
        _fail(f"error: cannot write schemas to {out_dir}: {error}")
    out.print(f"wrote {len(documents)} schemas to {out_dir}")


@app.command()
def config(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the effective settings (secrets masked) and where each value came from."""
    settings = _settings(ctx)
    masked = settings.masked()
    rows: dict[str, dict[str, Any]] = {}
    origin = sources()
    for name in Settings.__struct_fields__:
        source = "default" if origin[name] == "default" else "env"
        rows[name] = {"value": masked[name], "env": env_name(name), "source": source}
    if settings.demo_data is None:  # the demo looks for a dump beside the repository
        found = default_demo_data()
        rows["demo_data"]["value"] = None if found is None else str(found)
        rows["demo_data"]["detail"] = (
            "found beside the repository"
            if found is not None
            else f"no dump in {DEFAULT_DEMO_DATA}: the demo runs on simulated traffic only"
        )
    rows["embedded_nats"] = {"value": settings.embedded_nats, "env": None, "source": "derived"}
    rows["effective_database_url"] = {
        "value": masked["database_url (effective)"],
        "env": None,
        "source": "derived",
    }
    if as_json:
        _json(rows)
        return
    from rich.table import Table

    table = Table(title="Agora settings")
    table.add_column("variable", style="bold")
    table.add_column("value", overflow="fold")
    table.add_column("source")
    for name, row in rows.items():
        value = "(unset)" if row["value"] is None else str(row["value"])
        source = f"{row['source']} ({row['detail']})" if "detail" in row else row["source"]
        table.add_row(row["env"] or name, value, source)
    out.print(table)


# -- publish -----------------------------------------------------------------------------------

#: Lines validated and published per batch (one log line each).
PUBLISH_BATCH = 1000
#: Errors listed one by one (the counts are always complete).
ERRORS_LISTED = 100


@dataclass
class _PublishReport:
    lines: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, line: int, kind: str, message: str, field_: str | None = None) -> None:
        self.counts[kind] += 1
        if len(self.errors) < ERRORS_LISTED:
            entry: dict[str, Any] = {"line": line, "kind": kind, "error": message}
            if field_ is not None:
                entry["field"] = field_
            self.errors.append(entry)

    @property
    def ok(self) -> bool:
        return not (self.counts["invalid"] or self.counts["failed"] or self.counts["conflict"])


def _numbered_batches(stream: BinaryIO, size: int) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for number, raw in enumerate(stream, start=1):
        line = raw.strip()
        if not line:
            continue
        batch.append((number, line))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _publish_file(settings: Settings, stream: BinaryIO, batch_size: int) -> _PublishReport:
    from agora.stack import Stack
    from events.publisher import PublishStatus

    report = _PublishReport()
    batches = _numbered_batches(stream, batch_size)
    skew = timedelta(seconds=settings.publish_max_future_skew)
    async with Stack(settings) as stack:
        publisher = stack.publisher()
        while True:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                break
            before = report.counts.copy()
            numbers: list[int] = []
            events: list[Event] = []
            now = datetime.now(UTC)
            for number, line in batch:
                report.lines += 1
                try:
                    event = validate_json(line)
                    check_clock_skew(event, now, skew)
                except EventError as error:
                    field_ = getattr(error, "field", None)
                    report.error(number, "invalid", str(error), field_)
                    continue
                numbers.append(number)
                events.append(event)
            for number, result in zip(numbers, await _publish_all(publisher, events), strict=True):
                if result.status is PublishStatus.FAILED:
                    report.error(number, "failed", result.error or "not stored")
                elif result.status is PublishStatus.CONFLICT:  # another event holds its id
                    report.error(number, "conflict", result.error or "id already used")
                else:
                    report.counts[result.status.value] += 1
            delta = report.counts - before
            log.info(
                "published batch",
                lines=len(batch),
                stored=delta["stored"],
                duplicate=delta["duplicate"],
                failed=delta["failed"],
                invalid=delta["invalid"],
            )
    return report


async def _publish_all(publisher: Publisher, events: Sequence[Event]) -> list[PublishResult]:
    """Publish a batch; an error for the whole batch becomes one failed result per event."""
    from events.publisher import PublishResult, PublishStatus

    if not events:
        return []
    try:
        results: list[PublishResult] = await publisher.publish_many(events)
    except EventError as error:
        return [
            PublishResult(event_id=e.id, status=PublishStatus.FAILED, subject="", error=str(error))
            for e in events
        ]
    return results


@app.command()
def publish(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-", help="JSON Lines file of events, one event per line; - for stdin."
        ),
    ],
    as_json: JsonOption = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Events validated and published at once.")
    ] = PUBLISH_BATCH,
) -> None:
    """Validate JSON Lines events strictly and publish them; exit 1 if any is invalid or failed."""
    settings = _settings(ctx)
    if source == "-":
        report = _run(_publish_file(settings, sys.stdin.buffer, batch_size))
    else:
        try:
            handle = Path(source).open("rb")  # noqa: SIM115 - closed below
        except OSError as error:
            _fail(f"error: cannot read {source}: {error.strerror or error}", EXIT_USAGE)
        with handle:
            report = _run(_publish_file(settings, handle, batch_size))
    counts = report.counts
    summary = {
        "lines": report.lines,
        "stored": counts["stored"],
        "duplicate": counts["duplicate"],
        "failed": counts["failed"],
        "conflict": counts["conflict"],
        "invalid": counts["invalid"],
    }
    listed = counts["failed"] + counts["conflict"] + counts["invalid"]
    if as_json:
        listed_all = len(report.errors) == listed
        _json({**summary, "errors": report.errors, "errors_complete": listed_all})
    else:
        for entry in report.errors:
            typer.echo(f"line {entry['line']}: {entry['kind']}: {entry['error']}", err=True)
        unlisted = listed - len(report.errors)
        if unlisted > 0:
            typer.echo(f"... and {unlisted} more", err=True)
        out.print(
            f"read {summary['lines']} events: stored {summary['stored']}, "
            f"duplicate {summary['duplicate']}, failed {summary['failed']}, "
            f"conflict {summary['conflict']}, invalid {summary['invalid']}",
            soft_wrap=True,
        )
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)
