"""`agora replay`, `rebuild`, `activate`, `drop`: build generations and switch between them."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from agora.cli.common import (
    EXIT_FAILURE,
    GenerationArg,
    JsonOption,
    ProjectionArg,
    UsageError,
    _check_names,
    _errors,
    _json,
    _open_engine,
    _run_stoppable,
    _settings,
    _stop_on_signals,
    app,
    out,
)
from agora.config import Settings

# The engine (SQLAlchemy, nats-py, the lifecycle) and rich's progress bars load when a command
# runs, not with the CLI.
if TYPE_CHECKING:
    from projections.lifecycle import BuildOutcome, BuildProgress

#: Seconds between two plain progress lines of a build when stdout is not a terminal.
BUILD_PRINT_EVERY = 10.0
#: Seconds of checkpoint samples behind a build's events/s figure.
RATE_WINDOW = 5.0
#: Width of tables printed when stdout is not a terminal (wide enough not to truncate).

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


class _BuildDisplay:
    """A progress bar of a build (checkpoint against head, events/s, ETA) or plain lines."""

    def __init__(self, label: str, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

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
            # Log lines (stderr) print above the bar, unless stderr goes elsewhere than the bar.
            redirect_stderr=sys.stderr.isatty(),
        )
        self.task = self.progress.add_task(label, total=None, rate=0.0)
        self.samples: deque[tuple[float, int]] = deque()
        self.next_print = time.monotonic() + BUILD_PRINT_EVERY
        self.last: BuildProgress | None = None

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

    def update(self, state: BuildProgress) -> None:
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


async def _build(settings: Settings, plan: _BuildPlan) -> _BuildReport:
    from agora.stack import Stack
    from agora.workers import EngineError, open_engine, read_partitions, store_of, translate
    from projections import lifecycle
    from projections.lifecycle import BuildEnd

    name = plan.projection
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        engine = open_engine(settings)
        try:
            store = store_of(engine, name)
            async with Stack(settings, name="agora-build") as stack:
                state = (await stack.stream_status()).state
                with translate():
                    active = await asyncio.to_thread(store.active)
                    try:
                        row = await lifecycle.prepare_generation(
                            stack.js,
                            store,
                            resume=plan.resume,
                            start_seq=plan.start_seq,
                            from_time=plan.from_time,
                            partitions=plan.partitions,
                        )
                    except lifecycle.StartOutOfRange as error:
                        raise UsageError(str(error)) from None
                number = row.generation
                if not plan.quiet:
                    serving = f"g{active} keeps serving" if active else "none active yet"
                    parts = f"{row.partitions} partition{'s' if row.partitions != 1 else ''}"
                    out.print(
                        f"building {name} g{number} (version {row.version}, {parts}) from seq "
                        f"{row.start_seq:,}; stream last seq {state.last_seq:,}; {serving}",
                        soft_wrap=True,
                    )
                if not plan.swap:
                    live = lifecycle.live_worker(
                        await asyncio.to_thread(read_partitions, engine, name),
                        active,
                    )
                    if live:
                        typer.echo(
                            f"note: worker {live} runs {name}; it builds generations left "
                            f"building and swaps them in, g{number} included",
                            err=True,
                        )
                with _BuildDisplay(f"{name} g{number}", plan.quiet) as display:
                    try:
                        with translate(f"building {name} g{number}"):
                            outcome = await lifecycle.build(
                                stack.js,
                                store,
                                number,
                                swap=plan.swap,
                                stop=stop,
                                on_progress=display.update,
                            )
                    except EngineError as error:
                        if isinstance(error.__cause__, lifecycle.BuildPaused):
                            raise EngineError(str(error.__cause__)) from None
                        raise
        finally:
            engine.dispose()
    if outcome.end is BuildEnd.SUPERSEDED:
        raise EngineError(f"{name} g{number} became {outcome.state} while building")
    return _BuildReport(outcome, active)


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
    from agora.workers import EngineError, store_of, translate
    from projections import lifecycle
    from projections.store import NotCaughtUp

    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors():
            store = store_of(engine, projection)
            try:
                with translate():
                    previous = lifecycle.activate(store, generation, force=force)
                    row = lifecycle.generation_row(store, generation)
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
    from agora.workers import store_of, translate
    from projections import lifecycle

    settings = _settings(ctx)
    _check_names([projection])
    engine = _open_engine(settings)
    try:
        with _errors():
            store = store_of(engine, projection)
            with translate():
                lifecycle.drop(store, generation)
    finally:
        engine.dispose()
    if as_json:
        _json({"projection": projection, "generation": generation, "dropped": True})
    else:
        out.print(f"{projection}: g{generation} dropped")
