"""``agora demo`` and ``agora up``: the whole stack in one process, stopped by one event.

One asyncio loop runs, as tasks sharing one ``stop`` event: the NATS stack (the embedded
nats-server unless ``AGORA_NATS_URL`` is set; attached to when another agora process already runs
it), every registered projection worker (:func:`agora.workers.run_workers`), the moderation
service with its auto-hide reactor, the ingest service when ``AGORA_INGEST_TOKENS`` is set, and
the dashboard (:func:`agora.web.server.serve_dashboard`). ``agora demo`` adds, in order: the
import of a Stack Exchange dump as history, a wait until every projection has caught up with it,
then the simulator's live traffic.

The phases are shown as they go: import progress, catch-up per projection, then live events/s and
lag -- a live display on a terminal (when logs are quiet), plain lines otherwise
(:mod:`agora.progress`). A component that ends before ``stop`` (a port in use, NATS gone for
good) stops everything and is reported (:class:`ComponentFailed`, exit 1). Shutdown: ``stop``
is set, every task finishes its work in progress (a worker commits or rolls back its batch),
then the stack closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog
from rich.console import Console

from agora.config import DEFAULT_DEMO_DATA, Settings, default_demo_data, env_name
from agora.errors import AgoraError
from agora.history import import_lines, known_ids, stored_again
from agora.moderation_wiring import run_moderation
from agora.progress import Display, Monitor, Reading, catch_up_lines, live_lines
from agora.serve import run_service
from agora.simulator_wiring import run_simulator
from agora.stack import Stack
from agora.web.server import serve_dashboard
from agora.workers import one_line, open_engine, run_workers
from events.subjects import STREAM
from services.errors import ServiceError
from services.moderation.app import Running
from services.simulator.runner import RunStats
from services.stackexchange.importer import ImportProgress, ImportSummary, import_stackexchange

log = structlog.get_logger("agora.demo")

#: The dump ``agora demo`` imports when neither ``--data`` nor ``AGORA_DEMO_DATA`` is given.
DEFAULT_DATA: Final = DEFAULT_DEMO_DATA
#: Seconds between two readings of the stream head and the checkpoints.
SAMPLE_EVERY: Final = 0.5
#: Seconds the components may take to stop after ``stop`` before they are cancelled.
STOP_GRACE: Final = 20.0
#: The member the demo's generated moderator token belongs to.
DEMO_MODERATOR: Final = "demo-moderator"


class ComponentFailed(AgoraError):
    """A component of the stack ended before it was asked to stop."""

    def __init__(self, name: str, error: BaseException | None) -> None:
        reason = one_line(error) if error is not None else "it ended by itself"
        super().__init__(f"{name} stopped: {reason}")
        self.name = name


class NoDump(AgoraError):
    """The dump named by ``--data`` or ``AGORA_DEMO_DATA`` is not there (a usage error)."""


@dataclass(frozen=True)
class RunOptions:
    """What to run; the defaults are ``agora up``'s (no import, no simulator)."""

    host: str = "127.0.0.1"
    port: int = 8000
    """The dashboard's port."""
    moderation_port: int = 8001
    ingest_port: int = 8002
    data: Path | None = None
    """A Stack Exchange dump to import before going live (``agora demo``)."""
    community: str = "beer"
    """The community the dump becomes."""
    simulate: bool = False
    """Run the simulator once the projections have caught up (``agora demo``)."""
    rate: float = 20.0
    seed: int = 1
    communities: int = 5
    duration: float | None = None
    """Seconds of the live phase; None: until ``stop``."""
    name: str = "agora-up"


@dataclass
class RunReport:
    """What a run did, for the final lines and the exit code."""

    head: int = 0
    imported: ImportSummary | None = None
    simulated: RunStats | None = None
    caught_up_at: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No component failed and every imported event was stored."""
        failed_import = self.imported is not None and (
            self.imported.failed > 0 or not self.imported.complete
        )
        return not self.errors and not failed_import


def demo_data(settings: Settings, option: Path | None) -> Path | None:
    """The dump to import: ``--data``, else ``AGORA_DEMO_DATA``, else the default if present.

    An explicit directory without a ``Posts.xml`` is an error; a missing default is not.
    """
    chosen = option or settings.demo_data
    if chosen is None:
        return default_demo_data()
    if not (chosen / "Posts.xml").is_file():
        raise NoDump(f"no Stack Exchange dump in {chosen} (no Posts.xml)")
    return chosen


def with_demo_moderator(settings: Settings) -> tuple[Settings, str | None]:
    """The settings with a generated moderator token when none is configured, and that token."""
    if settings.moderator_tokens:
        return settings, None
    token = secrets.token_urlsafe(18)
    tokens = f"{DEMO_MODERATOR}@*={token}"
    return msgspec.structs.replace(settings, moderator_tokens=tokens), token


# -- components --------------------------------------------------------------------------------


class Components:
    """Named tasks sharing one stop event; one that ends before the stop is a failure."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.tasks: dict[str, asyncio.Task[Any]] = {}

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as the component ``name``."""
        self.tasks[name] = asyncio.create_task(coro, name=name)

    def check(self) -> None:
        """Raise :class:`ComponentFailed` for a component that ended while it should run."""
        if self.stop.is_set():
            return
        for name, task in self.tasks.items():
            if task.done():
                raise ComponentFailed(name, None if task.cancelled() else task.exception())

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if stopped or a component ends; then :meth:`check`."""
        stopping = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait(
                {stopping, *self.tasks.values()},
                timeout=max(seconds, 0.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopping.cancel()
        self.check()

    async def shutdown(self, grace: float = STOP_GRACE) -> list[str]:
        """Set stop, let every component finish, cancel laggards; return their errors."""
        self.stop.set()
        tasks = list(self.tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                log.warning("component did not stop in time; cancelling", component=task.get_name())
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        errors = []
        for name, task in self.tasks.items():
            if not task.cancelled() and task.exception() is not None:
                errors.append(f"{name}: {one_line(task.exception())}")  # type: ignore[arg-type]
        return errors


async def wait_listening(host: str, port: int, components: Components) -> None:
    """Wait until ``host:port`` accepts connections (or a component fails, or stop)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    while not components.stop.is_set():
        try:
            _reader, writer = await asyncio.open_connection(target, port)
        except OSError:
            await components.pause(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


# -- the phases --------------------------------------------------------------------------------


def start_components(
    settings: Settings,
    stack: Stack,
    options: RunOptions,
    components: Components,
    display: Display,
) -> None:
    """Start the workers, the moderation service, ingest (when configured), the dashboard."""
    stop = components.stop
    components.start("workers", run_workers(stack, None, stop=stop))

    def moderation_started(running: Running) -> None:
        display.note(f"moderation service: http://{_url_host(options.host)}:{running.port}")

    components.start(
        "moderation",
        run_moderation(
            settings, stop, options.host, options.moderation_port, on_started=moderation_started
        ),
    )
    if settings.ingest_tokens is not None:

        def ingest_ready(url: str | None) -> None:
            display.note(f"ingest service: {url}")

        components.start(
            "ingest",
            run_service(
                "ingest",
                settings,
                stop,
                host=options.host,
                port=options.ingest_port,
                on_ready=ingest_ready,
            ),
        )
    else:
        display.note(f"ingest service: not started ({env_name('ingest_tokens')} is not set)")
    components.start("dashboard", serve_dashboard(settings, stop, options.host, options.port))


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


async def import_history(
    stack: Stack, options: RunOptions, components: Components, display: Display, data: Path
) -> ImportSummary | None:
    """Import the dump while showing its progress; None when stopped first."""
    latest: list[ImportProgress] = []

    def on_progress(progress: ImportProgress) -> None:
        latest.append(progress)
        del latest[:-1]

    async def run() -> ImportSummary:
        try:
            return await import_stackexchange(
                data, stack.publisher(), options.community, progress=on_progress
            )
        except ServiceError as error:
            raise AgoraError(str(error)) from error

    display.note(f"importing {data} as community {options.community!r}")
    before = await known_ids(stack.js, options.community)
    task = asyncio.create_task(run())
    try:
        while not task.done():
            stopping = asyncio.create_task(components.stop.wait())
            await asyncio.wait({task, stopping}, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            components.check()
            if components.stop.is_set():
                return None
            if latest:
                p = latest[0]
                rate = p.published / p.seconds if p.seconds else 0.0
                display.show(
                    [
                        f"import: {p.published:,} events published ({p.stored:,} stored, "
                        f"{p.duplicate:,} duplicate, {p.failed:,} failed) · {rate:,.0f}/s"
                    ]
                )
        summary = task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, AgoraError):
                await task
    again = None if before is None else await stored_again(stack.js, options.community, before)
    for line in import_lines(summary, again):
        display.note(line)
    return summary


async def catch_up(
    monitor: Monitor, components: Components, display: Display, target: int
) -> Reading | None:
    """Wait until every projection applied ``target``; the reading, or None when stopped."""
    started = time.monotonic()
    while not components.stop.is_set():
        reading = await monitor.read()
        if reading.caught_up(target):
            display.show(catch_up_lines(reading, target), now=True)
            for name in sorted(reading.paused):
                display.note(f"{name} is paused by a fold error: see `agora status`")
            display.note(
                f"projections caught up with stream seq {target:,} "
                f"in {time.monotonic() - started:.1f} s"
            )
            return reading
        display.show(catch_up_lines(reading, target))
        await components.pause(SAMPLE_EVERY)
    return None


async def live(
    monitor: Monitor, components: Components, display: Display, duration: float | None
) -> None:
    """Show events/s and lag until ``duration`` seconds have passed or stop."""
    started = time.monotonic()
    detail = display.enabled
    first = True
    while not components.stop.is_set():
        reading = await monitor.read()
        elapsed = time.monotonic() - started
        left = None if duration is None else max(duration - elapsed, 0.0)
        last = left is not None and left <= 0
        display.show(live_lines(reading, monitor.rate(), left, detail), now=first or last)
        first = False
        if last:
            return
        await components.pause(SAMPLE_EVERY if left is None else min(SAMPLE_EVERY, left))


def banner(settings: Settings, stack: Stack, display: Display) -> None:
    """Where NATS, the data and the database are."""
    if stack.server is not None:
        where = f"embedded nats-server, store {settings.data_dir.resolve() / 'nats'}"
    elif stack.attached_url:
        where = "the embedded nats-server of another agora process"
    else:
        where = "external"
    display.note(f"NATS: {stack.display_url} ({where})")
    display.note(f"database: {settings.masked()['database_url (effective)']}")


async def run_stack(
    settings: Settings,
    options: RunOptions,
    stop: asyncio.Event,
    console: Console,
    *,
    live_display: bool,
) -> RunReport:
    """Run the stack until ``stop`` (or ``options.duration`` of live phase); report what it did."""
    report = RunReport()
    display = Display(console, live_display)
    components = Components(stop)
    engine = open_engine(settings)
    try:
        async with Stack(settings, name=options.name) as stack:
            banner(settings, stack, display)
            created = (await stack.ensure_stream()).created
            display.note(f"stream {STREAM} {'created' if created else 'exists'}")
            monitor = Monitor(stack, engine)
            try:
                with display.running():
                    await _phases(settings, stack, options, components, display, monitor, report)
            except ComponentFailed as error:
                report.errors.append(str(error))
            finally:
                display.note("stopping...")
                errors = await components.shutdown()
                report.errors.extend(e for e in errors if e not in report.errors)
                simulator = components.tasks.get("simulator")
                if (
                    simulator is not None
                    and simulator.done()
                    and not simulator.cancelled()
                    and simulator.exception() is None
                ):
                    report.simulated = simulator.result()
                with contextlib.suppress(AgoraError):
                    report.head = (await stack.stream_status()).state.last_seq
    finally:
        engine.dispose()
    return report


async def _phases(
    settings: Settings,
    stack: Stack,
    options: RunOptions,
    components: Components,
    display: Display,
    monitor: Monitor,
    report: RunReport,
) -> None:
    start_components(settings, stack, options, components, display)
    await wait_listening(options.host, options.port, components)
    display.note(f"dashboard: http://{_url_host(options.host)}:{options.port}")
    if options.data is not None:
        report.imported = await import_history(stack, options, components, display, options.data)
        if report.imported is None:
            return
    target = (await monitor.read()).head
    reading = await catch_up(monitor, components, display, target)
    if reading is None:
        return
    report.caught_up_at = target
    if options.simulate:
        components.start(
            "simulator",
            run_simulator(
                settings, components.stop, options.rate, options.seed, options.communities
            ),
        )
        display.note(
            f"simulator: {options.rate:g} events/s (daily average) over "
            f"{options.communities} communities"
        )
    await live(monitor, components, display, options.duration)


def summary_lines(report: RunReport) -> list[str]:
    """The final lines: the stream head, what the simulator published."""
    lines = [f"stopped; stream {STREAM} last seq {report.head:,}"]
    if report.simulated is not None:
        s = report.simulated
        lines.append(
            f"simulator published {s.stored + s.duplicates:,} events "
            f"({s.rate:.1f}/s, failed {s.failed:,})"
        )
    return lines
