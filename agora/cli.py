"""The ``agora`` command line.

Exit codes: 0 ok; 1 operational failure (NATS or the database unreachable, events failed or
invalid, a paused projection partition or a parked community in ``status``, a refused
``activate``/``drop``, an interrupted build, dead letters still failing or a community parked
again...); 2 usage or configuration error (a malformed ``AGORA_*`` variable, a bad option, an
unknown projection, a community that is not parked); 3 the stream exists with another
configuration (nothing was changed; every difference is printed).

Human output goes to stdout, errors to stderr, logs (structlog) to stderr; ``--json`` puts one
JSON document on stdout instead of the human output.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, NoReturn, TypeVar

import msgspec
import structlog
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy.engine import Engine

from agora.config import Settings, env_name, get_settings, sources
from agora.errors import AgoraError, ConfigError, StreamConfigMismatch
from agora.importing import import_app
from agora.logs import configure_logging
from agora.registry import UnknownProjection, get_projection, known_names
from agora.stack import Stack, StreamStateView, StreamStatus
from agora.workers import (
    LIVE_STATES,
    STALE_AFTER,
    BuildOutcome,
    BuildState,
    EngineError,
    StatusRow,
    build_generation,
    generation_row,
    open_engine,
    parse_time,
    projection_status,
    read_partitions,
    run_workers,
    seq_at_time,
    store_of,
    translate,
)
from events.catalogue import Event
from events.codec import check_clock_skew, validate_json
from events.errors import EventError
from events.publisher import Publisher, PublishResult, PublishStatus
from events.schema import event_schemas, union_schema
from events.subjects import STREAM
from projections.status import (
    ParkedRow,
    PartitionStatus,
    dead_letter,
    dead_letter_rows,
    parked_rows,
    read_status,
)
from projections.store import GenerationRow, NotCaughtUp, ProjectionStore, ReleaseOutcome
from projections.supervisor import start_generation

if TYPE_CHECKING:
    from agora.demo import RunOptions, RunReport

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_MISMATCH = 3

T = TypeVar("T")

log = structlog.get_logger("agora.cli")
out = Console(highlight=False, markup=False)

app = typer.Typer(
    name="agora",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
stream_app = typer.Typer(
    help="Create and inspect the append-only AGORA stream.", no_args_is_help=True
)
app.add_typer(stream_app, name="stream")

_HELP = frozenset({"--help", "-h"})

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

#: Settings that shape the stream, by StreamConfig field (for mismatch hints).
_STREAM_SETTING = {
    "num_replicas": "stream_replicas",
    "duplicate_window": "stream_duplicate_window",
    "max_age": "stream_max_age",
    "max_bytes": "stream_max_bytes",
}


# -- plumbing ----------------------------------------------------------------------------------


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _json(document: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n")
    sys.stdout.flush()


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    if not isinstance(settings, Settings):  # pragma: no cover - the callback always sets it
        settings = get_settings()
    return settings


def _mismatch_lines(error: StreamConfigMismatch) -> list[str]:
    lines = []
    for name, (have, want) in error.differences.items():
        setting = _STREAM_SETTING.get(name)
        hint = f" (set by {env_name(setting)})" if setting else " (fixed by Agora)"
        lines.append(f"  {name}: stream has {have!r}, Agora wants {want!r}{hint}")
    return lines


def _report_mismatch(error: StreamConfigMismatch) -> None:
    typer.echo(
        f"stream {STREAM} exists with a different configuration; nothing was changed:", err=True
    )
    for line in _mismatch_lines(error):
        typer.echo(line, err=True)


class UsageError(AgoraError):
    """A command's arguments do not fit the state found (exit 2), e.g. a sequence past the head."""


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn errors into messages on stderr and exit codes (see the module docstring)."""
    try:
        yield
    except StreamConfigMismatch as error:
        _report_mismatch(error)
        raise typer.Exit(EXIT_MISMATCH) from None
    except ConfigError as error:
        _fail(f"configuration error: {error}", EXIT_USAGE)
    except (UnknownProjection, UsageError) as error:
        _fail(f"error: {error}", EXIT_USAGE)
    except (AgoraError, EventError) as error:
        _fail(f"error: {error}")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine and turn errors into messages and exit codes."""
    with _errors():
        return asyncio.run(coro)
    raise AssertionError("unreachable")  # pragma: no cover - _errors exits or re-raises


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Agora: an event-sourced community backend on NATS JetStream.

    Settings come from AGORA_* environment variables (see `agora config`). With no
    AGORA_NATS_URL, commands start an embedded nats-server with its data under AGORA_DATA_DIR.

    Exit codes: 0 ok, 1 operational failure, 2 usage or configuration error, 3 the stream
    exists with another configuration.
    """
    try:
        settings = get_settings()
    except ConfigError as error:
        if _HELP.intersection(sys.argv[1:]):  # help needs no settings
            return
        _fail(f"configuration error: {error}", EXIT_USAGE)
    configure_logging(settings.log_format, settings.log_level)
    ctx.obj = settings


# -- stream ------------------------------------------------------------------------------------


@stream_app.command("init")
def stream_init(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Create the AGORA stream if missing (idempotent); exit 3 if it exists otherwise."""
    settings = _settings(ctx)

    async def run() -> bool:
        async with Stack(settings) as stack:
            return (await stack.ensure_stream()).created

    try:
        created = asyncio.run(run())
    except StreamConfigMismatch as error:
        if as_json:
            differences = {k: {"have": h, "want": w} for k, (h, w) in error.differences.items()}
            _json({"stream": STREAM, "matches": False, "differences": differences})
        _report_mismatch(error)
        raise typer.Exit(EXIT_MISMATCH) from None
    except (AgoraError, EventError) as error:
        _fail(f"error: {error}")
    if as_json:
        _json({"stream": STREAM, "created": created, "matches": True})
    elif created:
        out.print(f"stream {STREAM} created")
    else:
        out.print(f"stream {STREAM} exists, configuration matches")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _limit(value: float, render: str) -> str:
    return "unlimited" if value <= 0 else render


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat().replace("+00:00", "Z")


@stream_app.command("info")
def stream_info(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the stream's configuration and state (messages, bytes, sequences, times)."""
    settings = _settings(ctx)

    async def run() -> StreamStatus:
        async with Stack(settings) as stack:
            return await stack.stream_status()

    status = _run(run())
    if as_json:
        _json(status)
        return
    c, s = status.config, status.state
    table = Table(title=f"stream {c.name}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("subjects", ", ".join(c.subjects)),
        ("storage", f"{c.storage}, {c.num_replicas} replica(s)"),
        ("retention", f"{c.retention}, discard {c.discard}"),
        ("append-only", "yes" if c.deny_delete and c.deny_purge else "NO"),
        ("duplicate window", f"{c.duplicate_window:g} s"),
        ("max age", _limit(c.max_age, f"{c.max_age:g} s")),
        ("max bytes", _limit(c.max_bytes, _size(c.max_bytes))),
        ("max messages", _limit(c.max_msgs, str(c.max_msgs))),
        ("max message size", _size(c.max_msg_size)),
        ("messages", f"{s.messages:,}"),
        ("bytes", _size(s.bytes)),
        ("first seq", f"{s.first_seq:,}"),
        ("last seq", f"{s.last_seq:,}"),
        ("first time", _when(s.first_time)),
        ("last time", _when(s.last_time)),
        ("consumers", str(s.consumers)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


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
    rows["embedded_nats"] = {"value": settings.embedded_nats, "env": None, "source": "derived"}
    rows["effective_database_url"] = {
        "value": masked["database_url (effective)"],
        "env": None,
        "source": "derived",
    }
    if as_json:
        _json(rows)
        return
    table = Table(title="Agora settings")
    table.add_column("variable", style="bold")
    table.add_column("value", overflow="fold")
    table.add_column("source")
    for name, row in rows.items():
        value = "(unset)" if row["value"] is None else str(row["value"])
        table.add_row(row["env"] or name, value, row["source"])
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


# -- demo, up ----------------------------------------------------------------------------------

HostOption = Annotated[
    str, typer.Option("--host", help="Address the dashboard and the services listen on.")
]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="Dashboard port.")]
ModerationPortOption = Annotated[
    int,
    typer.Option("--moderation-port", min=0, max=65535, help="Moderation service port (0: any)."),
]
IngestPortOption = Annotated[
    int,
    typer.Option(
        "--ingest-port",
        min=0,
        max=65535,
        help="Ingest service port (0: any); it runs when AGORA_INGEST_TOKENS is set.",
    ),
]


def _run_stack_command(settings: Settings, options: RunOptions, quiet_logs: bool) -> None:
    """Run ``agora demo``/``agora up`` until stopped; exit 1 if a component failed."""
    from agora.demo import run_stack, summary_lines  # the web stack: imported only here

    if quiet_logs and sources()["log_level"] == "default":
        configure_logging(settings.log_format, "warning")  # the progress display says enough

    async def run() -> RunReport:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            return await run_stack(
                settings, options, stop, out, live_display=out.is_terminal and quiet_logs
            )

    report = _run_stoppable(run())
    for line in summary_lines(report):
        out.print(line, soft_wrap=True)
    for error in report.errors:
        typer.echo(f"error: {error}", err=True)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def demo(
    ctx: typer.Context,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            min=0,
            help="Seconds of live traffic once the projections caught up (default: Ctrl-C).",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="DIR",
            help="Stack Exchange dump imported as history (default: AGORA_DEMO_DATA, else "
            "../shared/data/stackexchange-beer beside the repository if present).",
        ),
    ] = None,
    rate: Annotated[
        float, typer.Option("--rate", min=0.1, help="Simulator: events/s (daily average).")
    ] = 20.0,
    seed: Annotated[int, typer.Option("--seed", help="Simulator: seed of its traffic.")] = 1,
    communities: Annotated[
        int, typer.Option("--communities", min=1, help="Simulator: communities to animate.")
    ] = 5,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    moderation_port: ModerationPortOption = 8001,
    ingest_port: IngestPortOption = 8002,
) -> None:
    """Everything at once: stack, stream, import, workers, services, simulator, dashboard.

    Imports the Stack Exchange dump as history, waits until every projection caught up, then
    runs the simulator's live traffic and serves the dashboard (http://127.0.0.1:8000) until
    Ctrl-C or --duration seconds. Without AGORA_MODERATOR_TOKENS it makes a moderator token for
    the run and prints it.
    """
    from agora.demo import NoDump, RunOptions, demo_data, with_demo_moderator

    settings = _settings(ctx)
    try:
        directory = demo_data(settings, data)
    except NoDump as error:
        _fail(f"error: {error}", EXIT_USAGE)
    if directory is None:
        out.print(
            "no Stack Exchange dump found (--data DIR or AGORA_DEMO_DATA): no history is "
            "imported, the simulator's traffic is all there is",
            soft_wrap=True,
        )
    settings, token = with_demo_moderator(settings)
    if token is not None:
        out.print(f"moderator token of this run: {token} (member demo-moderator)", soft_wrap=True)
    options = RunOptions(
        host=host,
        port=port,
        moderation_port=moderation_port,
        ingest_port=ingest_port,
        data=directory,
        simulate=True,
        rate=rate,
        seed=seed,
        communities=communities,
        duration=duration,
        name="agora-demo",
    )
    _run_stack_command(settings, options, quiet_logs=True)


@app.command()
def up(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    moderation_port: ModerationPortOption = 8001,
    ingest_port: IngestPortOption = 8002,
) -> None:
    """Run the stack until Ctrl-C or SIGTERM: workers, services and the dashboard.

    The same as `agora demo` without the import and the simulator, for real use.

    Uses the configured NATS and database (embedded nats-server and SQLite when unset); creates
    the stream if missing. Ingest runs when AGORA_INGEST_TOKENS is set. Exit 1 if a component
    fails (a port in use, the stream configured differently: exit 3).
    """
    from agora.demo import RunOptions

    options = RunOptions(
        host=host, port=port, moderation_port=moderation_port, ingest_port=ingest_port
    )
    _run_stack_command(_settings(ctx), options, quiet_logs=False)


# -- projections: worker, status, builds, generations, dead letters ----------------------------

#: Seconds between two plain progress lines of a build when stdout is not a terminal.
BUILD_PRINT_EVERY = 10.0
#: Seconds of checkpoint samples behind a build's events/s figure.
RATE_WINDOW = 5.0
#: Width of tables printed when stdout is not a terminal (wide enough not to truncate).
PLAIN_WIDTH = 240

dlq_app = typer.Typer(
    help="Inspect and retry dead letters: events a projection set aside.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(import_app, name="import")

ProjectionArg = Annotated[
    str, typer.Argument(metavar="PROJECTION", help="A projection name, e.g. event_counts.")
]
GenerationArg = Annotated[
    int, typer.Argument(metavar="GENERATION", min=1, help="A generation number (see status).")
]
PartitionsOption = Annotated[
    int | None,
    typer.Option(
        "--partitions",
        min=1,
        help="Partitions of the new generation (default: the active generation's, else 1).",
    ),
]
NoSwapOption = Annotated[
    bool,
    typer.Option(
        "--no-swap",
        help="Stop once caught up, leaving the generation building for `agora activate`.",
    ),
]
ResumeOption = Annotated[
    int | None,
    typer.Option(
        "--resume",
        metavar="GENERATION",
        min=1,
        help="Continue an interrupted build of this generation instead of starting one.",
    ),
]


def _wide() -> Console:
    """The console for tables: stdout's, or a wide one when stdout is not a terminal."""
    if out.is_terminal:
        return out
    return Console(highlight=False, markup=False, width=PLAIN_WIDTH)


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop``; a second one cancels the command at once."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _run_stoppable(coro: Coroutine[Any, Any, T]) -> T:
    """:func:`_run` for commands stopped by a signal; a second signal exits 1 at once."""
    try:
        return _run(coro)
    except asyncio.CancelledError:
        _fail("stopped at once (second signal)")


def _check_names(names: Sequence[str]) -> None:
    for name in names:
        with _errors():
            get_projection(name)


def _partition_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        parts = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of numbers: {value!r}") from None
    if not parts or parts[0] < 0:
        raise typer.BadParameter(f"partitions are numbers from 0: {value!r}")
    return parts


def _open_engine(settings: Settings) -> Engine:
    with _errors():
        return open_engine(settings)
    raise AssertionError("unreachable")  # pragma: no cover


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


@app.command()
def worker(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="PROJECTION", help="Projections to run (default: all registered)."),
    ] = None,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            min=1,
            help="Partitions of generations this worker creates (the first one, rebuilds).",
        ),
    ] = 1,
    only_partitions: Annotated[
        str | None,
        typer.Option(
            "--only-partitions",
            metavar="P,P...",
            help="Run only these live partitions (e.g. 0,3); other processes run the rest.",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port."
        ),
    ] = None,
    metrics_addr: Annotated[
        str, typer.Option("--metrics-addr", help="Address the metrics endpoint listens on.")
    ] = "127.0.0.1",
) -> None:
    """Run projection workers until Ctrl-C or SIGTERM (exit 0): live, and any building ones.

    Each partition has one writer at a time (a lock in the database), so several worker
    processes can run side by side; an idle one takes over a partition whose owner died.
    Generations left building (an interrupted rebuild, a new projection version) are built and
    swapped in. One progress line per projection every few seconds goes to the log.
    """
    settings = _settings(ctx)
    chosen = list(names or [])
    _check_names(chosen)
    only = _partition_list(only_partitions)

    async def run() -> None:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            async with Stack(settings, name="agora-worker") as stack:
                label = ", ".join(chosen or known_names())
                out.print(f"worker: {label} (Ctrl-C to stop)", soft_wrap=True)
                await run_workers(
                    stack,
                    chosen or None,
                    partitions,
                    only,
                    metrics_port,
                    stop,
                    metrics_addr=metrics_addr,
                )

    _run_stoppable(run())
    out.print("worker stopped")


@app.command()
def serve(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="SERVICE", help="The service to run, e.g. ingest.")
    ],
    host: Annotated[str, typer.Option("--host", help="Address the HTTP server listens on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="HTTP port (0: any free port).")
    ] = 8001,
    rate: Annotated[
        float, typer.Option("--rate", min=0.1, help="simulator: events/s (daily average).")
    ] = 50.0,
    seed: Annotated[int, typer.Option("--seed", help="simulator: seed of its traffic.")] = 1,
    communities: Annotated[
        int, typer.Option("--communities", min=1, help="simulator: communities to animate.")
    ] = 5,
) -> None:
    """Run a service until Ctrl-C or SIGTERM (exit 0): ingest, moderation or simulator.

    Requests in progress are finished before it exits; a second signal stops it at once
    (exit 1). See docs/ingest.md and docs/services.md.
    """
    # fastapi, uvicorn: imported only when serving
    from agora.serve import ServeOptions, run_service, service_names

    settings = _settings(ctx)
    if name not in service_names():
        _fail(f"error: no service {name!r} (known: {', '.join(service_names())})", EXIT_USAGE)
    options = ServeOptions(host=host, port=port, rate=rate, seed=seed, communities=communities)

    def ready(url: str | None) -> None:
        where = f" on {url}" if url else ""
        out.print(f"{name}: serving{where} (Ctrl-C to stop)", soft_wrap=True)

    async def run() -> None:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            await run_service(
                name, settings, stop, host=host, port=port, on_ready=ready, serve_options=options
            )

    _run_stoppable(run())
    out.print(f"{name} stopped")


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
        "ok": not paused and not parked and nats_error is None and not _stale(rows),
    }


def _stale(rows: list[StatusRow]) -> bool:
    """Whether a partition of an active or building generation has a stale owner."""
    return any(r.stale and r.generation_state in LIVE_STATES for r in rows)


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
    of an active or building generation is paused by a fold error, has a parked community or a
    stale owner (its writer lease expired), or when NATS cannot be reached (the database part is
    still shown).
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


class _BuildDisplay:
    """A progress bar of a build (checkpoint against head, events/s, ETA) or plain lines."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.quiet = quiet
        self.interactive = out.is_terminal and not quiet
        self.label = label
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9.0f} events/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=out,
            disable=not self.interactive,
        )
        self.task = self.progress.add_task(label, total=None, rate=0.0)
        self.samples: deque[tuple[float, int]] = deque()
        self.next_print = time.monotonic() + BUILD_PRINT_EVERY
        self.last: BuildState | None = None

    def __enter__(self) -> _BuildDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def rate(self) -> float:
        """Sequences applied per second over the last few seconds."""
        if len(self.samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return (c1 - c0) / max(t1 - t0, 1e-6)

    def update(self, state: BuildState) -> None:
        """Show where the build is."""
        self.last = state
        now = time.monotonic()
        self.samples.append((now, state.checkpoint))
        while len(self.samples) > 2 and self.samples[1][0] < now - RATE_WINDOW:
            self.samples.popleft()
        base = state.start_seq - 1
        self.progress.update(
            self.task,
            completed=max(state.checkpoint - base, 0),
            total=max(state.head - base, state.checkpoint - base, 0),
            rate=self.rate(),
        )
        if not self.interactive and not self.quiet and now >= self.next_print:
            self.next_print = now + BUILD_PRINT_EVERY
            out.print(
                f"{self.label}: checkpoint {state.checkpoint:,} of {state.head:,} "
                f"({self.rate():.0f} events/s)",
                soft_wrap=True,
            )


@dataclass
class _BuildPlan:
    projection: str
    start_seq: int | None
    from_time: datetime | None
    partitions: int | None
    swap: bool
    resume: int | None
    quiet: bool


@dataclass
class _BuildReport:
    outcome: BuildOutcome
    previous: int | None


def _live_worker(rows: Sequence[PartitionStatus], generation: int | None) -> str | None:
    """The id of a worker that looks alive on ``generation`` (a fresh running status row)."""
    now = datetime.now(UTC)
    for row in rows:
        updated = parse_time(row.updated_at)
        if (
            row.generation == generation
            and row.worker_state in ("running", "catching_up")
            and updated is not None
            and (now - updated).total_seconds() < STALE_AFTER
        ):
            return str(row.worker)
    return None


async def _build(settings: Settings, plan: _BuildPlan) -> _BuildReport:
    name = plan.projection
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        engine = open_engine(settings)
        try:
            store = store_of(engine, name)
            async with Stack(settings, name="agora-build") as stack:
                state = (await stack.stream_status()).state
                with translate():
                    rows = await asyncio.to_thread(store.generations)
                active = next((r for r in rows if r.state == "active"), None)
                number = await _prepare_generation(stack, store, rows, active, plan, state)
                with translate():
                    row = await asyncio.to_thread(generation_row, store, number)
                if row is None:  # pragma: no cover - just created or checked
                    raise EngineError(f"{name} g{number} disappeared")
                if not plan.quiet:
                    serving = f"g{active.generation} keeps serving" if active else "none active yet"
                    parts = f"{row.partitions} partition{'s' if row.partitions != 1 else ''}"
                    out.print(
                        f"building {name} g{number} (version {row.version}, {parts}) from seq "
                        f"{row.start_seq:,}; stream last seq {state.last_seq:,}; {serving}",
                        soft_wrap=True,
                    )
                if not plan.swap:
                    live = _live_worker(
                        await asyncio.to_thread(read_partitions, engine, name),
                        active.generation if active else None,
                    )
                    if live:
                        typer.echo(
                            f"note: worker {live} runs {name}; it builds generations left "
                            f"building and swaps them in, g{number} included",
                            err=True,
                        )
                with _BuildDisplay(f"{name} g{number}", plan.quiet) as display:
                    outcome = await build_generation(
                        stack.js,
                        store,
                        number,
                        swap=plan.swap,
                        stop=stop,
                        on_progress=display.update,
                    )
        finally:
            engine.dispose()
    return _BuildReport(outcome, active.generation if active else None)


async def _prepare_generation(
    stack: Stack,
    store: ProjectionStore,
    rows: list[GenerationRow],
    active: GenerationRow | None,
    plan: _BuildPlan,
    state: StreamStateView,
) -> int:
    """The generation to build: the one to resume, or a new one starting where asked."""
    name = plan.projection
    if plan.resume is not None:
        row = next((r for r in rows if r.generation == plan.resume), None)
        if row is None:
            raise EngineError(f"{name} has no generation {plan.resume}")
        if row.state != "building":
            raise EngineError(
                f"{name} g{row.generation} is {row.state}; only a building one resumes"
            )
        return row.generation
    building = next((r for r in rows if r.state == "building"), None)
    if building is not None:
        g = building.generation
        raise EngineError(
            f"{name} g{g} is already building (from seq {building.start_seq}, at "
            f"{min(building.checkpoints, default=building.start_seq - 1)}): continue it with "
            f"`agora replay {name} --resume {g}` (a running `agora worker` continues it too) "
            f"or drop it with `agora drop {name} {g}`"
        )
    start = plan.start_seq or 1
    if plan.from_time is not None:
        start = await seq_at_time(stack.js, plan.from_time)
    if start > state.last_seq + 1:
        raise UsageError(f"--from-seq {start} is past the stream's last seq {state.last_seq}")
    if 1 < start < state.first_seq:
        raise UsageError(
            f"events before seq {state.first_seq} have expired from the stream; "
            f"replay from {state.first_seq} or later (or from 1 to take what is left)"
        )
    partitions = plan.partitions or (active.partitions if active else 1)
    with translate():
        return await asyncio.to_thread(start_generation, store, partitions, start)


def _build_command(ctx: typer.Context, plan: _BuildPlan, as_json: bool) -> None:
    settings = _settings(ctx)
    _check_names([plan.projection])
    name = plan.projection
    report = _run_stoppable(_build(settings, plan))
    outcome = report.outcome
    g, previous = outcome.generation, report.previous
    if as_json:
        _json(
            {
                "projection": name,
                "generation": g,
                "previous": previous,
                "start_seq": outcome.start_seq,
                "checkpoint": outcome.checkpoint,
                "stream_last_seq": outcome.head,
                "swapped": outcome.swapped,
                "finished": outcome.finished,
                "seconds": round(outcome.seconds, 3),
            }
        )
    if not outcome.finished:
        typer.echo(
            f"stopped: {name} g{g} stays building at checkpoint {outcome.checkpoint:,} of "
            f"{outcome.head:,}. A running `agora worker` continues it and swaps it in, as does "
            f"`agora replay {name} --resume {g}`; `agora drop {name} {g}` discards it.",
            err=True,
        )
        raise typer.Exit(EXIT_FAILURE)
    if as_json:
        return
    applied = outcome.checkpoint - outcome.start_seq + 1
    speed = applied / max(outcome.seconds, 1e-6)
    if outcome.swapped:
        was = f"g{previous}" if previous is not None and previous != g else "none"
        out.print(
            f"{name}: g{g} is active, swapped in at seq {outcome.checkpoint:,} after "
            f"{outcome.seconds:.1f} s ({speed:.0f} events/s); previous: {was}",
            soft_wrap=True,
        )
        if previous is not None and previous != g:
            out.print(
                f"g{previous} is retired: roll back with `agora activate {name} {previous} "
                f"--force`, free it with `agora drop {name} {previous}`",
                soft_wrap=True,
            )
    else:
        out.print(
            f"{name}: g{g} caught up at seq {outcome.checkpoint:,} after {outcome.seconds:.1f} s "
            f"and stays building; swap it in with `agora activate {name} {g}`",
            soft_wrap=True,
        )


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"not an ISO 8601 time: {value!r} (e.g. 2026-03-01T12:00:00Z)", param_hint="--from-time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def replay(
    ctx: typer.Context,
    projection: ProjectionArg,
    from_seq: Annotated[
        int | None, typer.Option("--from-seq", min=1, help="First stream sequence to fold.")
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(
            "--from-time",
            metavar="TIME",
            help="Fold from the first event stored at or after TIME (ISO 8601; UTC if no offset).",
        ),
    ] = None,
    partitions: PartitionsOption = None,
    no_swap: NoSwapOption = False,
    resume: ResumeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build a new generation from a stream position, then swap it in atomically.

    The active generation keeps serving meanwhile. Ctrl-C stops the build (exit 1) and leaves
    the generation building: `agora replay PROJECTION --resume G` or a running `agora worker`
    continues it. Exit 0 once swapped in (or caught up with --no-swap).
    """
    if from_seq is not None and from_time is not None:
        raise typer.BadParameter("give --from-seq or --from-time, not both")
    if resume is not None and (from_seq or from_time or partitions):
        raise typer.BadParameter("--resume continues a build as it was started: no other start")
    when = _parse_time(from_time) if from_time is not None else None
    plan = _BuildPlan(projection, from_seq, when, partitions, not no_swap, resume, as_json)
    _build_command(ctx, plan, as_json)


@app.command()
def rebuild(
    ctx: typer.Context,
    projection: ProjectionArg,
    partitions: PartitionsOption = None,
    no_swap: NoSwapOption = False,
    resume: ResumeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rebuild a projection from the whole stream (replay from seq 1) and swap it in."""
    if resume is not None and partitions:
        raise typer.BadParameter("--resume continues a build as it was started")
    plan = _BuildPlan(projection, 1, None, partitions, not no_swap, resume, as_json)
    _build_command(ctx, plan, as_json)


@app.command()
def activate(
    ctx: typer.Context,
    projection: ProjectionArg,
    generation: GenerationArg,
    force: Annotated[
        bool,
        typer.Option("--force", help="Skip the caught-up check: the rollback to an older one."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Point a projection's tables at another generation, atomically (the old one is retired).

    Without --force a generation behind the active one is refused (exit 1). Running workers
    switch within a second and catch the generation up from its checkpoint.
    """
    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors():
            store = store_of(engine, projection)
            try:
                with translate():
                    previous = store.active()
                    store.activate(generation, require_caught_up=not force)
                    row = generation_row(store, generation)
            except EngineError as error:
                if isinstance(error.__cause__, NotCaughtUp):
                    raise EngineError(
                        f"{error}: it is behind the active generation; --force swaps it in "
                        "anyway (running workers then catch it up)"
                    ) from None
                raise
    finally:
        engine.dispose()
    version = store.projection.version
    if as_json:
        _json({"projection": projection, "generation": generation, "previous": previous})
        return
    was = f"; g{previous} is retired" if previous not in (None, generation) else ""
    out.print(f"{projection}: g{generation} is active{was}")
    if row is not None and row.version != version:
        out.print(
            f"note: g{generation} is of version {row.version} and the code of version {version}: "
            "a running worker rebuilds it"
        )


@app.command()
def drop(
    ctx: typer.Context,
    projection: ProjectionArg,
    generation: GenerationArg,
    as_json: JsonOption = False,
) -> None:
    """Drop a generation's tables (refused for the active one: exit 1)."""
    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors():
            store = store_of(engine, projection)
            with translate():
                store.drop(generation)
    finally:
        engine.dispose()
    if as_json:
        _json({"projection": projection, "generation": generation, "dropped": True})
    else:
        out.print(f"{projection}: g{generation} dropped")


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
            (letter["projection"], letter["generation"]), "dropped"
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
    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors():
            store = store_of(engine, projection)
            with translate(f"cannot release {community} of {projection}"):
                active = generation if generation is not None else store.active()
                if active is None:
                    raise EngineError(f"{projection} has no active generation")
                if community not in store.parked_communities(active):
                    raise UsageError(f"{community} is not parked in {projection} g{active}")
                outcome: ReleaseOutcome = store.retry_community(
                    active, community, skip_reason=skip_reason
                )
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
    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors():
            store = store_of(engine, projection)
            with translate(f"cannot retry dead letters of {projection}"):
                active = store.active()
                if active is None:
                    raise EngineError(f"{projection} has no active generation")
                outcome = store.retry_dead_letters(active, seqs or None)
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


def main() -> None:
    """Run the ``agora`` command line."""
    app(prog_name="agora")


if __name__ == "__main__":
    main()
