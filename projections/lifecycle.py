"""The generation lifecycle: bootstrap, build and swap in, resume, activate, roll back, drop.

A projection's tables come in generations. The first one is created and activated by
:func:`bootstrap`. A rebuild prepares a new generation (:func:`prepare_generation`), which
:func:`build` folds by replay beside the active one -- that keeps serving -- and swaps in
atomically once it has caught up. A stopped build leaves its generation ``building`` at its
checkpoint: :func:`build` of the same number resumes it, in this process or another (a running
supervisor builds every generation left building). :func:`activate` swaps a generation in by
hand, :func:`rollback` swaps an older one back, :func:`drop` frees a generation's tables. The
dead-letter entry points re-apply what a fold set aside once its cause is fixed.

The store (:class:`~projections.store.ProjectionStore`) holds the primitives (ensure, activate,
drop, generations); this module holds the rules around them. Every error is a
:class:`~projections.errors.ProjectionError`; the CLI only presents them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
import sqlalchemy as sa
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamInfo

from events.subjects import STREAM
from projections.errors import DatabaseError, ProjectionError
from projections.infra import GenerationState
from projections.runner import Worker, WorkerSettings, WorkerState
from projections.status import ParkedRow, PartitionStatus, parked_rows, read_status
from projections.store import (
    GenerationRow,
    NotBuilding,
    NotCaughtUp,
    ProjectionStore,
    ReleaseOutcome,
    RetryOutcome,
)

__all__ = [
    "LIVE_STATES",
    "AlreadyBuilding",
    "BuildEnd",
    "BuildOutcome",
    "BuildPaused",
    "BuildProgress",
    "GenerationState",
    "NoActiveGeneration",
    "NotParked",
    "StartOutOfRange",
    "activate",
    "bootstrap",
    "build",
    "drop",
    "generation_row",
    "live_worker",
    "prepare_generation",
    "release_community",
    "retry_dead_letters",
    "rollback",
    "seq_at_time",
    "serving_positions",
    "start_generation",
    "stream_head",
]

log = structlog.get_logger("agora.projections")

#: Seconds :func:`stream_head` keeps retrying a stream that does not answer (a broker stall).
STREAM_PATIENCE = 60.0
#: Seconds between two looks of a build at its generation and the stream's head.
BUILD_POLL = 0.25
#: Seconds the workers of a build may take to stop once it ends.
STOP_TIMEOUT = 30.0
#: Seconds a JetStream request of :func:`seq_at_time` may take.
REQUEST_TIMEOUT = 5.0

_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
)
"""Errors of a stream request that a stalled, restarting or electing broker gives: retried."""


LIVE_STATES = frozenset({GenerationState.ACTIVE, GenerationState.BUILDING})
"""Generation states whose paused partitions count as a failure (retired ones are history)."""


class BuildPaused(ProjectionError):
    """The generation being built cannot get further alone: a partition paused on a fold
    error, or a community is parked (the message names the command that releases it)."""


class AlreadyBuilding(ProjectionError):
    """A new build was asked for while another generation of the projection is building."""


class StartOutOfRange(ProjectionError):
    """A build was asked to start past the stream's end or before what it still holds."""


class NoActiveGeneration(ProjectionError):
    """The projection has no active generation (it was never started)."""


class NotParked(ProjectionError):
    """A community to release is not parked in that generation."""


# -- the stream --------------------------------------------------------------------------------


async def stream_info(
    js: JetStreamContext, stream: str = STREAM, *, patience: float = STREAM_PATIENCE
) -> StreamInfo:
    """The stream's info; a broker that does not answer is asked again for ``patience`` seconds.

    Retries back off from 0.1 s to 2 s. A stream that does not exist, or any other refusal, is
    not retried.
    """
    deadline = time.monotonic() + patience
    pause = 0.1
    while True:
        try:
            return await js.stream_info(stream)
        except _TRANSIENT as error:
            if time.monotonic() + pause > deadline:
                raise ProjectionError(
                    f"cannot read stream {stream}: {_text(error)} (retried for {patience:.0f} s)"
                ) from error
            log.warning(
                "stream did not answer; retrying", stream=stream, error=_text(error), retry_in=pause
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        except (nats.errors.Error, nats.js.errors.Error) as error:
            raise ProjectionError(f"cannot read stream {stream}: {_text(error)}") from error


async def stream_head(
    js: JetStreamContext, stream: str = STREAM, *, patience: float = STREAM_PATIENCE
) -> int:
    """The stream's last sequence (0 when empty), retried as :func:`stream_info` says."""
    return int((await stream_info(js, stream, patience=patience)).state.last_seq)


async def seq_at_time(js: JetStreamContext, when: datetime, stream: str = STREAM) -> int:
    """The first stream sequence whose message was stored at or after ``when`` (UTC if naive).

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
    try:
        info = await js.add_consumer(stream, config, timeout=REQUEST_TIMEOUT)
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.delete_consumer(stream, info.name)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as error:
        raise ProjectionError(
            f"cannot find the first event at or after {when.isoformat()}: {_text(error)}"
        ) from error
    if info.delivered is None:
        raise ProjectionError("the server did not report the consumer's starting sequence")
    return int(info.delivered.stream_seq) + 1


def _text(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- creating generations ----------------------------------------------------------------------


def generation_row(store: ProjectionStore, number: int) -> GenerationRow | None:
    """The registry row of one generation, or None."""
    return next((r for r in store.generations() if r.generation == number), None)


def bootstrap(store: ProjectionStore, partitions: int) -> int:
    """Make sure the projection has an active generation; create and activate g1 if none."""
    for attempt in range(3):
        try:
            rows = store.generations()
            active = next((r for r in rows if r.state is GenerationState.ACTIVE), None)
            if active is not None:
                return active.generation
            if not rows:
                store.ensure(1, partitions)
                store.activate(1)
                return 1
            building = next((r for r in rows if r.state is GenerationState.BUILDING), None)
            if building is not None and len(rows) == 1:
                store.activate(building.generation)
                return building.generation
            raise ProjectionError(f"{store.projection.name} has generations but none is active")
        except (DatabaseError, sa.exc.IntegrityError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def start_generation(store: ProjectionStore, partitions: int, start_seq: int = 1) -> int:
    """Create a new building generation of the current code version, folding from ``start_seq``."""
    number = store.next_generation()
    store.ensure(number, partitions, start_seq)
    return number


async def prepare_generation(
    js: JetStreamContext,
    store: ProjectionStore,
    *,
    resume: int | None = None,
    start_seq: int | None = None,
    from_time: datetime | None = None,
    partitions: int | None = None,
) -> GenerationRow:
    """The generation to build: ``resume`` (it must be building), or a new one.

    A new one folds from ``start_seq`` (default 1) or from the first event stored at or after
    ``from_time``, in ``partitions`` partitions (default: the active generation's, else 1).
    Refused while another generation is building (:class:`AlreadyBuilding`: resume or drop it)
    and when the start is past the stream's end or before its first kept event
    (:class:`StartOutOfRange`).
    """
    name = store.projection.name
    rows = await asyncio.to_thread(store.generations)
    if resume is not None:
        row = next((r for r in rows if r.generation == resume), None)
        if row is None:
            raise ProjectionError(f"{name} has no generation {resume}")
        if row.state is not GenerationState.BUILDING:
            raise NotBuilding(
                f"{name} g{row.generation} is {row.state}; only a building one resumes"
            )
        return row
    building = next((r for r in rows if r.state is GenerationState.BUILDING), None)
    if building is not None:
        g = building.generation
        raise AlreadyBuilding(
            f"{name} g{g} is already building (from seq {building.start_seq}, at "
            f"{min(building.checkpoints, default=building.start_seq - 1)}): continue it with "
            f"`agora replay {name} --resume {g}` (a running `agora worker` continues it too) "
            f"or drop it with `agora drop {name} {g}`"
        )
    state = (await stream_info(js)).state
    start = start_seq or 1
    if from_time is not None:
        start = await seq_at_time(js, from_time)
    if start > state.last_seq + 1:
        raise StartOutOfRange(f"seq {start} is past the stream's last seq {state.last_seq}")
    if 1 < start < state.first_seq:
        raise StartOutOfRange(
            f"events before seq {state.first_seq} have expired from the stream; "
            f"replay from {state.first_seq} or later (or from 1 to take what is left)"
        )
    active = next((r for r in rows if r.state is GenerationState.ACTIVE), None)
    count = partitions or (active.partitions if active else 1)
    number = await asyncio.to_thread(start_generation, store, count, start)
    row = await asyncio.to_thread(generation_row, store, number)
    if row is None:  # pragma: no cover - just created
        raise ProjectionError(f"{name} g{number} disappeared")
    return row


# -- building ----------------------------------------------------------------------------------


class BuildEnd(enum.StrEnum):
    """How a build ended."""

    SWAPPED = "swapped"
    """The generation is the active one (swapped in by this build or by another process)."""
    CAUGHT_UP = "caught_up"
    """Without swap: it reached the stream's head and stays building."""
    STOPPED = "stopped"
    """Stopped first: it stays building at its checkpoint, to be resumed."""
    SUPERSEDED = "superseded"
    """It stopped being built meanwhile (rolled back after a swap, or dropped): a stale build
    never undoes an operator's decision."""


@dataclass(frozen=True)
class BuildProgress:
    """Where a building generation is: its slowest partition against the stream's head."""

    projection: str
    generation: int
    start_seq: int
    checkpoint: int
    head: int


@dataclass(frozen=True)
class BuildOutcome:
    """How a build ended, where its generation was then, and how long it took."""

    projection: str
    generation: int
    start_seq: int
    checkpoint: int
    head: int
    end: BuildEnd
    state: GenerationState | None
    """The generation's state at the end (None: it no longer exists)."""
    seconds: float

    @property
    def swapped(self) -> bool:
        """The generation is the active one now."""
        return self.end is BuildEnd.SWAPPED

    @property
    def finished(self) -> bool:
        """Swapped in, or (without swap) caught up with the head."""
        return self.end in (BuildEnd.SWAPPED, BuildEnd.CAUGHT_UP)


async def build(
    js: JetStreamContext,
    store: ProjectionStore,
    number: int,
    *,
    swap: bool = True,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[BuildProgress], None] | None = None,
    settings: WorkerSettings | None = None,
    poll: float = BUILD_POLL,
    wait_when_stuck: bool = False,
) -> BuildOutcome:
    """Build generation ``number`` until it is swapped in (or, without ``swap``, caught up).

    Runs a worker per partition and watches the generation in the database, so a build finished
    by another process ends this one too. The active generation keeps serving meanwhile. Setting
    ``stop`` leaves the generation building at its checkpoint (:attr:`BuildEnd.STOPPED`); a
    generation rolled back or dropped meanwhile ends the build (:attr:`BuildEnd.SUPERSEDED`).
    A paused partition or a parked community raises :class:`BuildPaused`, unless
    ``wait_when_stuck`` (a supervisor's builds wait for the operator instead). The workers stop
    when this returns; the supervisors then run the generation if it is active.
    """
    stop = stop or asyncio.Event()
    name = store.projection.name
    row = await asyncio.to_thread(generation_row, store, number)
    if row is None:
        raise ProjectionError(f"{name} has no generation {number}")
    started = time.monotonic()
    since = datetime.now(UTC)
    head = 0

    def outcome(current: GenerationRow | None, end: BuildEnd) -> BuildOutcome:
        shown = current or row
        checkpoint = min(shown.checkpoints, default=shown.start_seq - 1)
        return BuildOutcome(
            projection=name,
            generation=number,
            start_seq=shown.start_seq,
            checkpoint=checkpoint,
            head=max(head, checkpoint),
            end=end,
            state=current.state if current is not None else None,
            seconds=time.monotonic() - started,
        )

    if row.state is not GenerationState.BUILDING:
        return _ended(outcome, row, name, number)
    inner = asyncio.Event()
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
    previous_head: int | None = None
    current: GenerationRow | None = row
    try:
        while True:
            try:
                current = await asyncio.to_thread(generation_row, store, number)
            except (DatabaseError, sa.exc.SQLAlchemyError) as error:
                log.warning("cannot read generations", projection=name, error=_text(error))
            else:
                if current is None or current.state is not GenerationState.BUILDING:
                    return _ended(outcome, current, name, number)
                for task in tasks:
                    if task.done():
                        task.result()  # raises the worker's error
                        raise ProjectionError(f"a worker of {name} g{number} stopped")
                if not wait_when_stuck:
                    try:
                        await _refuse_stuck(store, number, since)
                    except (DatabaseError, sa.exc.SQLAlchemyError) as error:
                        log.warning("cannot read status", projection=name, error=_text(error))
                if stop.is_set():
                    return outcome(current, BuildEnd.STOPPED)
                head = await stream_head(js)
                checkpoint = min(current.checkpoints, default=current.start_seq - 1)
                if on_progress is not None:
                    on_progress(BuildProgress(name, number, current.start_seq, checkpoint, head))
                if not swap and checkpoint >= head:
                    return outcome(current, BuildEnd.CAUGHT_UP)
                # Caught up means: at the head as it was one look ago. Under sustained traffic the
                # head moves on while it is looked at, so "at the current head" may never happen;
                # activate() itself checks, atomically, that no partition is behind the active one.
                target = head if previous_head is None else min(head, previous_head)
                previous_head = head
                if swap and checkpoint >= target and await _swap(store, number, checkpoint):
                    return outcome(
                        dataclasses.replace(current, state=GenerationState.ACTIVE), BuildEnd.SWAPPED
                    )
            if stop.is_set():
                return outcome(current, BuildEnd.STOPPED)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)
    finally:
        inner.set()
        _done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _ended(
    outcome: Callable[[GenerationRow | None, BuildEnd], BuildOutcome],
    current: GenerationRow | None,
    name: str,
    number: int,
) -> BuildOutcome:
    """The outcome of a build whose generation is no longer building."""
    if current is not None and current.state is GenerationState.ACTIVE:
        return outcome(current, BuildEnd.SWAPPED)
    log.info(
        "build ended: the generation is no longer building",
        projection=name,
        generation=number,
        state=current.state if current is not None else None,
    )
    return outcome(current, BuildEnd.SUPERSEDED)


async def _swap(store: ProjectionStore, number: int, checkpoint: int) -> bool:
    """Swap ``number`` in if it is caught up and still building; False if not (yet)."""
    try:
        await asyncio.to_thread(functools.partial(store.activate, number, only_building=True))
    except (NotCaughtUp, NotBuilding):
        return False  # not yet; or someone else decided: the next look reads the state
    except DatabaseError as error:
        log.warning(
            "cannot swap in; retrying", projection=store.projection.name, error=_text(error)
        )
        return False
    log.info(
        "generation swapped in",
        projection=store.projection.name,
        generation=number,
        checkpoint=checkpoint,
    )
    return True


async def _refuse_stuck(store: ProjectionStore, number: int, since: datetime) -> None:
    """Raise :class:`BuildPaused` if a partition paused (since ``since``) or a community parked."""
    name = store.projection.name
    paused = await asyncio.to_thread(_paused_since, store, number, since)
    if paused:
        first = paused[0]
        raise BuildPaused(
            f"{name} g{number} p{first.partition} paused at checkpoint "
            f"{first.checkpoint}: {first.error}"
        )
    stuck = await asyncio.to_thread(_parked_in, store, number)
    if stuck:
        raise BuildPaused(
            f"{name} g{number}: community {stuck[0].community} parked at seq "
            f"{stuck[0].first_seq}: {stuck[0].error} (agora dlq retry {name} "
            f"--community {stuck[0].community} --generation {number})"
        )


def _parked_in(store: ProjectionStore, number: int) -> list[ParkedRow]:
    rows = parked_rows(store.engine, store.projection.name)
    return [r for r in rows if r.generation == number]


def _paused_since(store: ProjectionStore, number: int, since: datetime) -> list[PartitionStatus]:
    rows = read_status(store.engine, store.projection.name)
    return [
        r
        for r in rows
        if r.generation == number
        and r.worker_state == WorkerState.PAUSED
        and r.updated_at is not None
        and _aware(datetime.fromisoformat(r.updated_at)) >= since
    ]


def _aware(moment: datetime) -> datetime:
    """SQLite returns timestamps naive, in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def serving_positions(
    rows: Sequence[PartitionStatus], names: Sequence[str]
) -> tuple[dict[str, int | None], set[str]]:
    """Each projection's position (its active generation's slowest partition; None: not started)
    and the projections stuck on a paused partition of a live generation."""
    points: dict[str, int | None] = dict.fromkeys(names)
    paused: set[str] = set()
    for row in rows:
        if row.projection not in points:
            continue
        if row.worker_state == WorkerState.PAUSED and row.generation_state in LIVE_STATES:
            paused.add(row.projection)
        if row.generation_state == GenerationState.ACTIVE:
            have = points[row.projection]
            points[row.projection] = row.checkpoint if have is None else min(have, row.checkpoint)
    return points, paused


def live_worker(
    rows: Sequence[PartitionStatus],
    generation: int | None,
    *,
    stale_after: float,
    now: datetime | None = None,
) -> str | None:
    """The id of a worker that looks alive on ``generation``: a running status row updated
    within ``stale_after`` seconds. Such a worker's supervisor also builds and swaps in every
    generation left building."""
    now = now or datetime.now(UTC)
    for row in rows:
        if (
            row.generation == generation
            and row.worker_state in (WorkerState.RUNNING, WorkerState.CATCHING_UP)
            and row.updated_at is not None
            and (now - _aware(datetime.fromisoformat(row.updated_at))).total_seconds() < stale_after
        ):
            return str(row.worker)
    return None


# -- swapping by hand, dropping ----------------------------------------------------------------


def activate(store: ProjectionStore, number: int, *, force: bool = False) -> int | None:
    """Swap generation ``number`` in, atomically; return the one it replaced (now retired).

    Without ``force`` a generation behind the active one is refused
    (:class:`~projections.store.NotCaughtUp`); running workers catch a forced one up.
    """
    previous = store.active()
    store.activate(number, require_caught_up=not force)
    return previous


def rollback(store: ProjectionStore, number: int) -> int | None:
    """Swap an older generation (retired, kept) back in, behind or not; return the replaced one."""
    return activate(store, number, force=True)


def drop(store: ProjectionStore, number: int) -> None:
    """Drop a generation's tables (refused for the active one); a build of it ends by itself."""
    store.drop(number)


# -- dead letters ------------------------------------------------------------------------------


def retry_dead_letters(
    store: ProjectionStore, seqs: Sequence[int] | None = None
) -> tuple[int, RetryOutcome]:
    """Re-apply the active generation's dead letters (``seqs`` only, if given).

    Returns the generation and what was applied, found applied already, or still failed.
    """
    active = store.active()
    if active is None:
        raise NoActiveGeneration(f"{store.projection.name} has no active generation")
    return active, store.retry_dead_letters(active, list(seqs) if seqs else None)


def release_community(
    store: ProjectionStore,
    community: str,
    *,
    generation: int | None = None,
    skip_reason: str | None = None,
) -> tuple[int, ReleaseOutcome]:
    """Retry (or, with ``skip_reason``, skip) a parked community's poison event, then its held ones.

    ``generation`` defaults to the active one; a building one is released the same way.
    """
    name = store.projection.name
    number = generation if generation is not None else store.active()
    if number is None:
        raise NoActiveGeneration(f"{name} has no active generation")
    if community not in store.parked_communities(number):
        raise NotParked(f"{community} is not parked in {name} g{number}")
    return number, store.retry_community(number, community, skip_reason=skip_reason)
