"""The ``agora`` command line.

Exit codes: 0 ok; 1 operational failure (NATS unreachable, events failed or invalid...);
2 usage or configuration error (a malformed ``AGORA_*`` variable, a bad option); 3 the stream
exists with another configuration (nothing was changed; every difference is printed).

Human output goes to stdout, errors to stderr, logs (structlog) to stderr; ``--json`` puts one
JSON document on stdout instead of the human output.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, NoReturn, TypeVar

import msgspec
import structlog
import typer
from rich.console import Console
from rich.live import Live
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
from rich.text import Text

from agora.config import Settings, env_name, get_settings, sources
from agora.errors import AgoraError, ConfigError, StreamConfigMismatch
from agora.logs import configure_logging
from agora.sample import DEFAULT_STEP, SampleTraffic
from agora.stack import Stack, StreamStatus
from events.catalogue import Event
from events.codec import validate_json
from events.errors import EventError
from events.publisher import Publisher, PublishResult, PublishStatus
from events.schema import event_schemas, union_schema
from events.subjects import STREAM

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


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine and turn errors into messages and exit codes."""
    try:
        return asyncio.run(coro)
    except StreamConfigMismatch as error:
        _report_mismatch(error)
        raise typer.Exit(EXIT_MISMATCH) from None
    except ConfigError as error:
        _fail(f"configuration error: {error}", EXIT_USAGE)
    except (AgoraError, EventError) as error:
        _fail(f"error: {error}")


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
) -> None:
    """Export the event contract as JSON Schema (the union on stdout without --out)."""
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
        return not (self.counts["invalid"] or self.counts["failed"])


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
    async with Stack(settings) as stack:
        publisher = stack.publisher()
        while True:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                break
            before = report.counts.copy()
            numbers: list[int] = []
            events: list[Event] = []
            for number, line in batch:
                report.lines += 1
                try:
                    event = validate_json(line)
                except EventError as error:
                    field_ = getattr(error, "field", None)
                    report.error(number, "invalid", str(error), field_)
                    continue
                numbers.append(number)
                events.append(event)
            for number, result in zip(numbers, await _publish_all(publisher, events), strict=True):
                if result.status is PublishStatus.FAILED:
                    report.error(number, "failed", result.error or "not stored")
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
        "invalid": counts["invalid"],
    }
    if as_json:
        listed_all = len(report.errors) == counts["failed"] + counts["invalid"]
        _json({**summary, "errors": report.errors, "errors_complete": listed_all})
    else:
        for entry in report.errors:
            typer.echo(f"line {entry['line']}: {entry['kind']}: {entry['error']}", err=True)
        unlisted = counts["failed"] + counts["invalid"] - len(report.errors)
        if unlisted > 0:
            typer.echo(f"... and {unlisted} more", err=True)
        out.print(
            f"read {summary['lines']} events: stored {summary['stored']}, "
            f"duplicate {summary['duplicate']}, failed {summary['failed']}, "
            f"invalid {summary['invalid']}",
            soft_wrap=True,
        )
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


# -- demo --------------------------------------------------------------------------------------

#: Events per publish_many call while publishing the history.
HISTORY_BATCH = 500
#: Largest live batch (when the publisher falls behind the rate).
LIVE_BATCH = 1000
#: Seconds the demo lets a batch in flight finish after Ctrl-C before cancelling it.
STOP_GRACE = 2.0
#: Seconds between two refreshes of the stream's last sequence in the live line.
STATUS_EVERY = 1.0
#: Seconds between two live lines when stdout is not a terminal.
PRINT_EVERY = 10.0


@dataclass
class _Tally:
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    last_seq: int = 0

    def add(self, results: Iterable[PublishResult]) -> None:
        for result in results:
            self.counts[result.status.value] += 1
            if result.seq is not None:
                self.last_seq = max(self.last_seq, result.seq)
            if result.status is PublishStatus.FAILED:
                self.reasons[result.error or "not stored"] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        c = self.counts
        return (
            f"published {self.total} events (stored {c['stored']}, "
            f"duplicate {c['duplicate']}, failed {c['failed']})"
        )


@dataclass
class _DemoOptions:
    duration: float | None
    rate: float
    seed: int
    history: int
    communities: int
    members: int


async def _demo(settings: Settings, options: _DemoOptions) -> _Tally:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    force = asyncio.Event()

    def on_signal() -> None:
        (force if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    tally = _Tally()
    try:
        async with Stack(settings, name="agora-demo") as stack:
            _demo_banner(stack, settings)
            created = (await stack.ensure_stream()).created
            state = "created" if created else "exists, configuration matches"
            out.print(f"stream {STREAM} {state}")
            work = asyncio.create_task(_demo_traffic(stack, options, tally, stop))
            await _until_done_or_stopped(work, stop, force)
            status = None
            if stack.nc.is_connected:
                with contextlib.suppress(AgoraError, TimeoutError):
                    status = await asyncio.wait_for(stack.stream_status(), STATUS_EVERY * 3)
            where = (
                f"stream last seq {status.state.last_seq}"
                if status
                else "stream info unavailable (NATS unreachable)"
            )
            out.print(f"{tally.summary()}; {where}", soft_wrap=True)
            for reason, n in tally.reasons.most_common(5):
                typer.echo(f"  failed x{n}: {reason}", err=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return tally


def _demo_banner(stack: Stack, settings: Settings) -> None:
    data_dir = settings.data_dir.resolve()
    if stack.server is not None:
        out.print(
            f"NATS: {stack.nats_url} (embedded nats-server, store {data_dir / 'nats'})",
            soft_wrap=True,
        )
    else:
        out.print(f"NATS: {settings.masked()['nats_url']} (external)")
    out.print(f"data dir: {data_dir}", soft_wrap=True)
    out.print(f"try: nats --server {stack.display_url} stream info {STREAM}", soft_wrap=True)


async def _until_done_or_stopped(
    work: asyncio.Task[None], stop: asyncio.Event, force: asyncio.Event
) -> None:
    """Wait for ``work``; after a stop request give it a grace period, then cancel it."""
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            forced = asyncio.create_task(force.wait())
            await asyncio.wait({work, forced}, timeout=STOP_GRACE)
            forced.cancel()
            if not work.done():
                work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
    finally:
        stopped.cancel()
        if not work.done():
            work.cancel()


async def _demo_traffic(
    stack: Stack, options: _DemoOptions, tally: _Tally, stop: asyncio.Event
) -> None:
    publisher = stack.publisher()
    start = datetime.now(UTC) - DEFAULT_STEP * options.history
    traffic = SampleTraffic(options.seed, options.communities, options.members, start)
    await _demo_history(publisher, traffic, options.history, tally, stop)
    if not stop.is_set():
        await _demo_live(stack, publisher, traffic, options, tally, stop)


async def _demo_history(
    publisher: Publisher, traffic: SampleTraffic, count: int, tally: _Tally, stop: asyncio.Event
) -> None:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} events/s"),
        TextColumn("stored {task.fields[stored]} · duplicate {task.fields[duplicate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=out, disable=not out.is_terminal) as progress:
        task = progress.add_task("sample history", total=count, rate=0.0, stored=0, duplicate=0)
        done = 0
        while done < count and not stop.is_set():
            events = [traffic.next_event() for _ in range(min(HISTORY_BATCH, count - done))]
            tally.add(await _publish_all(publisher, events))
            done += len(events)
            progress.update(
                task,
                advance=len(events),
                rate=done / max(time.monotonic() - started, 1e-6),
                stored=tally.counts["stored"],
                duplicate=tally.counts["duplicate"],
            )
            log.debug("published sample batch", events=len(events), done=done)
    seconds = time.monotonic() - started
    out.print(
        f"sample history: {done} events in {seconds:.1f} s "
        f"({done / max(seconds, 1e-6):.0f} events/s)",
        soft_wrap=True,
    )
    log.info("sample history published", events=done, **dict(tally.counts))


async def _demo_live(
    stack: Stack,
    publisher: Publisher,
    traffic: SampleTraffic,
    options: _DemoOptions,
    tally: _Tally,
    stop: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    recent: deque[tuple[float, int]] = deque()
    last_seq = tally.last_seq
    next_status = started

    def line() -> Text:
        now = loop.time()
        while recent and recent[0][0] < now - 5:
            recent.popleft()
        span = min(5.0, max(now - started, 1e-6))
        rate = sum(n for _, n in recent) / span
        left = ""
        if options.duration is not None:
            left = f" · {max(0.0, options.duration - (now - started)):.0f} s left"
        return Text(
            f"live: {rate:6.1f} events/s · sent {sent} · stream last seq {last_seq}{left}"
            " · Ctrl-C to stop"
        )

    interactive = out.is_terminal
    next_print = started + PRINT_EVERY
    with contextlib.ExitStack() as stack_:
        live = stack_.enter_context(Live(line(), console=out)) if interactive else None
        while not stop.is_set():
            now = loop.time()
            elapsed = now - started
            if options.duration is not None and elapsed >= options.duration:
                break
            due = min(int(options.rate * elapsed) + 1 - sent, LIVE_BATCH)
            if due > 0:
                at = datetime.now(UTC)
                events = [traffic.next_event(at) for _ in range(due)]
                tally.add(await _publish_all(publisher, events))
                sent += due
                recent.append((loop.time(), due))
            if loop.time() >= next_status:
                next_status = loop.time() + STATUS_EVERY
                with contextlib.suppress(AgoraError):
                    last_seq = (await stack.stream_status()).state.last_seq
                log.debug("live sample traffic", sent=sent, last_seq=last_seq)
            if live is not None:
                live.update(line())
            elif loop.time() >= next_print:  # no terminal: a plain line now and then
                next_print = loop.time() + PRINT_EVERY
                out.print(line(), soft_wrap=True)
            wake = started + sent / options.rate
            if options.duration is not None:
                wake = min(wake, started + options.duration)
            timeout = min(max(wake - loop.time(), 0.0), 0.25)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
        if live is not None:
            live.update(line())
        else:
            out.print(line(), soft_wrap=True)
    log.info("live sample traffic stopped", sent=sent)


@app.command()
def demo(
    ctx: typer.Context,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", min=0, help="Seconds of live traffic after the history (default: Ctrl-C)."
        ),
    ] = None,
    rate: Annotated[float, typer.Option("--rate", min=0.1, help="Live events per second.")] = 20.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample traffic.")] = 1,
    history: Annotated[
        int, typer.Option("--history", min=0, help="Sample events published first.")
    ] = 5000,
    communities: Annotated[
        int, typer.Option("--communities", min=1, help="Communities in the sample.")
    ] = 5,
    members: Annotated[int, typer.Option("--members", min=2, help="Members in the sample.")] = 200,
) -> None:
    """Start the stack, publish a sample history, then live sample traffic until Ctrl-C."""
    settings = _settings(ctx)
    options = _DemoOptions(duration, rate, seed, history, communities, members)
    tally = _run(_demo(settings, options))
    if tally.counts["failed"]:
        raise typer.Exit(EXIT_FAILURE)


def main() -> None:
    """Run the ``agora`` command line."""
    app(prog_name="agora")


if __name__ == "__main__":
    main()
