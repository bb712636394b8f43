"""Edge helpers of the projection commands: the database, workers, builds, stream positions.

This is where the CLI meets the projection engine: it opens the database from the settings,
runs a :class:`~projections.supervisor.Supervisor` until stopped, builds a generation while
watching it in the database, resolves times to stream sequences and reads projection status
with the stream's head. Driver and engine errors (nats-py, SQLAlchemy,
:class:`~projections.errors.ProjectionError`) are translated here into one-line
:class:`EngineError` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
import sqlalchemy as sa
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.engine import Engine

from agora.config import Settings, env_name
from agora.errors import AgoraError, ConfigError
from agora.registry import get_projections
from agora.stack import Stack
from events.subjects import STREAM
from projections.database import create_engine
from projections.errors import ProjectionError
from projections.lease import expired_leases

# The status rules live in projections.status; the build commands still import these from here.
from projections.status import LIVE_STATES as LIVE_STATES
from projections.status import STALE_AFTER as STALE_AFTER
from projections.status import (
    ParkedRow,
    PartitionStatus,
    StatusRow,
    parked_rows,
    read_status,
    with_lag,
)
from projections.status import parse_time as parse_time

# The engine's worker modules load only where used, so that `agora status` does not import them.
if TYPE_CHECKING:
    from projections.runner import WorkerSettings
    from projections.store import GenerationRow, ProjectionStore
    from projections.supervisor import Supervisor

log = structlog.get_logger("agora.workers")

#: Seconds a JetStream request of these helpers may take.
REQUEST_TIMEOUT = 5.0
#: Seconds between two progress log lines of `agora worker`, per projection.
LOG_EVERY = 5.0
#: Seconds between two looks at a building generation in the database.
BUILD_POLL = 0.25
#: Seconds the workers of a build may take to stop after it is stopped.
STOP_TIMEOUT = 30.0


class EngineError(AgoraError):
    """The projection engine, its database or NATS failed; the message is one line."""


class BuildPaused(EngineError):
    """A partition of the generation being built paused on a fold error."""


# -- errors ------------------------------------------------------------------------------------


def one_line(error: BaseException) -> str:
    """The first line of an error's message (SQLAlchemy appends SQL and links on more)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return first or type(error).__name__


@contextlib.contextmanager
def translate(what: str | None = None) -> Iterator[None]:
    """Turn engine, SQLAlchemy and nats-py errors raised inside into :class:`EngineError`."""
    prefix = f"{what}: " if what else ""
    try:
        yield
    except AgoraError:
        raise
    except ProjectionError as error:
        raise EngineError(prefix + one_line(error)) from error
    except sa.exc.SQLAlchemyError as error:
        raise EngineError(f"{prefix}database error: {one_line(error)}") from error
    except (nats.errors.Error, TimeoutError) as error:
        raise EngineError(f"{prefix}NATS error: {one_line(error)}") from error


# -- the database ------------------------------------------------------------------------------


def open_engine(settings: Settings) -> Engine:
    """The projection database of ``settings`` (SQLite in ``data_dir`` unless a URL is set)."""
    url = settings.effective_database_url
    try:
        engine = create_engine(url)
    except ProjectionError as error:  # a malformed or unsupported URL
        masked = str(settings.masked()["database_url (effective)"])
        reason = one_line(error).replace(repr(url), repr(masked)).replace(url, masked)
        raise ConfigError(f"{env_name('database_url')}: {reason}") from None
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise EngineError(f"cannot create the folder of {database}: {error}") from None
    return engine


def store_of(engine: Engine, name: str) -> ProjectionStore:
    """A store of the registered projection ``name`` (UnknownProjection if there is none)."""
    from projections.store import ProjectionStore

    return ProjectionStore(engine, get_projections([name])[0])


# -- the stream --------------------------------------------------------------------------------


async def stream_head(js: JetStreamContext) -> int:
    """The stream's last sequence (0 when empty)."""
    with translate(f"cannot read stream {STREAM}"):
        info = await js.stream_info(STREAM)
    return int(info.state.last_seq)


async def seq_at_time(js: JetStreamContext, when: datetime) -> int:
    """The first stream sequence whose message was stored at or after ``when`` (UTC).

    An ephemeral consumer starting at ``when`` is created (nothing is delivered: it is a pull
    consumer nobody pulls from) and deleted; the server positions it on that message, which its
    info reports as one past the last delivered sequence. With no message at or after ``when``
    this is the stream's last sequence + 1.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    config = ConsumerConfig(
        name=f"agora-seq-at-{uuid.uuid4().hex[:12]}",
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=when.astimezone(UTC),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    with translate(f"cannot find the first event at or after {when.isoformat()}"):
        info = await js.add_consumer(STREAM, config, timeout=REQUEST_TIMEOUT)
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.delete_consumer(STREAM, info.name)
    if info.delivered is None:
        raise EngineError("the server did not report the consumer's starting sequence")
    return int(info.delivered.stream_seq) + 1


# -- running workers ---------------------------------------------------------------------------


def _metrics_server(port: int, addr: str) -> Any:
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as error:
        raise EngineError(
            f"cannot serve metrics on {addr}:{port}: {error.strerror or error}"
        ) from None
    log.info("serving metrics", url=f"http://{addr}:{port}/metrics")
    return server


async def run_workers(
    stack: Stack,
    names: Sequence[str] | None,
    partitions: int = 1,
    only_partitions: Sequence[int] | None = None,
    metrics_port: int | None = None,
    stop: asyncio.Event | None = None,
    *,
    metrics_addr: str = "127.0.0.1",
    settings: WorkerSettings | None = None,
    log_every: float = LOG_EVERY,
    engine: Engine | None = None,
) -> None:
    """Run a supervisor for the projections ``names`` (all when empty) until ``stop`` is set.

    ``partitions`` is the partition count of generations this process creates (the first one,
    and rebuilds after a projection's version changes); existing generations keep theirs.
    ``only_partitions`` limits the live partitions this process runs. Logs one progress line per
    projection every ``log_every`` seconds.
    """
    from projections.supervisor import Supervisor

    stop = stop or asyncio.Event()
    projections = get_projections(list(names) if names else None)
    await stack.stream_status()  # the stream must exist: fail clearly instead of retrying
    own_engine = engine is None
    db = engine if engine is not None else open_engine(stack.settings)
    metrics = _metrics_server(metrics_port, metrics_addr) if metrics_port is not None else None
    supervisor = Supervisor(
        stack.js,
        db,
        projections,
        partitions=partitions,
        only_partitions=only_partitions,
        settings=settings,
    )
    log.info(
        "worker started",
        projections=[p.name for p in projections],
        partitions=partitions,
        only_partitions=list(only_partitions) if only_partitions is not None else None,
    )
    reporter = asyncio.create_task(_report(supervisor, stop, log_every))
    try:
        with translate():
            await supervisor.run(stop)
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        if own_engine:
            db.dispose()
        log.info("worker stopped")


async def _report(supervisor: Supervisor, stop: asyncio.Event, every: float) -> None:
    """Log one line per projection every ``every`` seconds: state, checkpoint, events/s."""
    last: dict[tuple[str, int, int], int] = {}
    last_time = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        now = time.monotonic()
        elapsed = max(now - last_time, 1e-6)
        last_time = now
        for name, store in supervisor.stores.items():
            live = [(k, w) for k, (w, _) in list(supervisor.workers.items()) if k[0] == name]
            handled = 0
            for key, worker in live:
                handled += worker.progress.events - last.get(key, 0)
                last[key] = worker.progress.events
            try:
                rows = await asyncio.to_thread(store.generations)
            except (ProjectionError, sa.exc.SQLAlchemyError) as error:
                log.warning("cannot read generations", projection=name, error=one_line(error))
                continue
            active = next((r for r in rows if r.state == "active"), None)
            building = [
                {"generation": r.generation, "checkpoint": min(r.checkpoints, default=0)}
                for r in rows
                if r.state == "building"
            ]
            states = sorted({str(w.state) for _, w in live}) or ["none"]
            log.info(
                "projection progress",
                projection=name,
                generation=active.generation if active else None,
                checkpoint=min(active.checkpoints, default=0) if active else None,
                events_per_s=round(max(handled, 0) / elapsed, 1),
                workers=",".join(states),
                building=building or None,
            )


# -- building generations ----------------------------------------------------------------------


@dataclass(frozen=True)
class BuildState:
    """Where a building generation is, as read from the database and the stream."""

    checkpoint: int
    head: int
    start_seq: int


@dataclass(frozen=True)
class BuildOutcome:
    """How a build ended."""

    projection: str
    generation: int
    start_seq: int
    checkpoint: int
    head: int
    swapped: bool
    """The generation is the active one now (swapped in by this build or another process)."""
    finished: bool
    """Swapped in, or (without swap) caught up with the head; False when stopped first."""
    seconds: float


def generation_row(store: ProjectionStore, number: int) -> GenerationRow | None:
    """The registry row of one generation, or None."""
    return next((r for r in store.generations() if r.generation == number), None)


def _parked_in(engine: Engine, projection: str, number: int) -> list[ParkedRow]:
    return [r for r in parked_rows(engine, projection) if r.generation == number]


def _paused_since(
    engine: Engine, projection: str, number: int, since: datetime
) -> list[PartitionStatus]:
    rows = read_status(engine, projection)
    return [
        r
        for r in rows
        if r.generation == number
        and r.worker_state == "paused"
        and (when := parse_time(r.updated_at)) is not None
        and when >= since
    ]


async def build_generation(
    js: JetStreamContext,
    store: ProjectionStore,
    number: int,
    *,
    swap: bool = True,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[BuildState], None] | None = None,
    settings: WorkerSettings | None = None,
    poll: float = BUILD_POLL,
) -> BuildOutcome:
    """Build generation ``number`` until it is swapped in (or, without ``swap``, caught up).

    With ``swap`` the engine's :func:`~projections.supervisor.build_and_swap` does the work; the
    generation's state and checkpoints are watched in the database, so a build finished by
    another process (a running `agora worker` also builds generations in state ``building``)
    ends this one too. Stopping (``stop``) leaves the generation ``building`` at its checkpoint.
    Raises :class:`BuildPaused` when a partition pauses on a fold error.
    """
    from projections.runner import Worker
    from projections.supervisor import build_and_swap

    stop = stop or asyncio.Event()
    name = store.projection.name
    with translate():
        row = await asyncio.to_thread(generation_row, store, number)
    if row is None:
        raise EngineError(f"{name} has no generation {number}")
    if row.state != "building":
        raise EngineError(f"{name} g{number} is {row.state}, not building")
    inner = asyncio.Event()
    started = time.monotonic()
    since = datetime.now(UTC)
    tasks: list[asyncio.Task[Any]]
    if swap:
        tasks = [
            asyncio.create_task(
                build_and_swap(js, store, number, settings=settings, stop=inner),
                name=f"build {name} g{number}",
            )
        ]
    else:
        tasks = [
            asyncio.create_task(
                Worker(
                    js,
                    store,
                    generation=number,
                    partition=p,
                    partitions=row.partitions,
                    settings=settings,
                ).run(inner),
                name=f"build {name} g{number} p{p}",
            )
            for p in range(row.partitions)
        ]

    def outcome(
        current: GenerationRow, head: int, *, swapped: bool, finished: bool
    ) -> BuildOutcome:
        return BuildOutcome(
            projection=name,
            generation=number,
            start_seq=current.start_seq,
            checkpoint=min(current.checkpoints, default=current.start_seq - 1),
            head=head,
            swapped=swapped,
            finished=finished,
            seconds=time.monotonic() - started,
        )

    try:
        while True:
            with translate(f"building {name} g{number}"):
                current = await asyncio.to_thread(generation_row, store, number)
                if current is None:
                    raise EngineError(f"{name} g{number} disappeared while building")
                head = await stream_head(js)
                checkpoint = min(current.checkpoints, default=current.start_seq - 1)
                if on_progress is not None:
                    on_progress(BuildState(checkpoint, head, current.start_seq))
                if current.state == "active":
                    return outcome(current, head, swapped=True, finished=True)
                if current.state != "building":
                    raise EngineError(f"{name} g{number} became {current.state} while building")
                if not swap and checkpoint >= head:
                    return outcome(current, head, swapped=False, finished=True)
                paused = await asyncio.to_thread(_paused_since, store.engine, name, number, since)
                if paused:
                    first = paused[0]
                    raise BuildPaused(
                        f"{name} g{number} p{first.partition} paused at checkpoint "
                        f"{first.checkpoint}: {first.error}"
                    )
                stuck = await asyncio.to_thread(_parked_in, store.engine, name, number)
                if stuck:
                    raise BuildPaused(
                        f"{name} g{number}: community {stuck[0].community} parked at seq "
                        f"{stuck[0].first_seq}: {stuck[0].error} (agora dlq retry {name} "
                        f"--community {stuck[0].community} --generation {number})"
                    )
                for task in tasks:
                    if task.done() and not task.cancelled():
                        task.result()  # raises the worker's or build's error
                if stop.is_set():
                    return outcome(current, head, swapped=False, finished=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)
    finally:
        inner.set()
        _done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- status ------------------------------------------------------------------------------------


def read_partitions(engine: Engine, projection: str | None = None) -> list[PartitionStatus]:
    """Every partition of every non-dropped generation, from the database."""
    with translate("cannot read projection status"):
        return read_status(engine, projection)


async def projection_status(
    settings: Settings, engine: Engine, projection: str | None = None
) -> tuple[int | None, list[StatusRow], str | None]:
    """Status rows with lag; when NATS cannot be reached, rows without lag and the reason."""
    partitions = await asyncio.to_thread(read_partitions, engine, projection)
    with translate("cannot read writer leases"):
        expired = await asyncio.to_thread(expired_leases, engine)
    try:
        async with Stack(settings, name="agora-status") as stack:
            with translate():
                head, rows = await with_lag(stack.js, partitions, expired=expired)
    except AgoraError as error:
        _, rows = await with_lag(None, partitions, expired=expired)
        return None, rows, str(error)
    return head, rows, None
