"""The build loop: a building generation's partitions run until it can be swapped in."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
import structlog
from nats.js import JetStreamContext

from projections.errors import DatabaseError, ProjectionError
from projections.infra import GenerationState
from projections.lifecycle.generations import generation_row
from projections.runner import Worker, WorkerSettings, WorkerState
from projections.status import ParkedRow, PartitionStatus, parked_rows, read_status
from projections.store import GenerationRow, NotBuilding, NotCaughtUp, ProjectionStore
from projections.stream import one_line, stream_head
from projections.swap import SwapBlocked

log = structlog.get_logger("agora.projections")

#: Seconds between two looks of a build at its generation and the stream's head.
BUILD_POLL = 0.25
#: Seconds the workers of a build may take to stop once it ends.
STOP_TIMEOUT = 30.0


class BuildPaused(ProjectionError):
    """The generation being built cannot get further alone: a partition paused on a fold
    error, or a community is parked (the message names the command that releases it)."""


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
                log.warning("cannot read generations", projection=name, error=one_line(error))
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
                        log.warning("cannot read status", projection=name, error=one_line(error))
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
    except (NotCaughtUp, NotBuilding, SwapBlocked):
        return False  # not yet (or readers held it off); or someone else decided: next look
    except DatabaseError as error:
        log.warning(
            "cannot swap in; retrying", projection=store.projection.name, error=one_line(error)
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
        and r.updated_at >= since
    ]
