"""Creating generations and switching between them: bootstrap, prepare, activate, drop."""

from __future__ import annotations

import asyncio
from datetime import datetime

import sqlalchemy as sa
from nats.js import JetStreamContext

from projections.errors import DatabaseError, ProjectionError
from projections.infra import GenerationState
from projections.store import GenerationRow, NotBuilding, ProjectionStore
from projections.stream import seq_at_time, stream_info


class AlreadyBuilding(ProjectionError):
    """A new build was asked for while another generation of the projection is building."""


class StartOutOfRange(ProjectionError):
    """A build was asked to start past the stream's end or before what it still holds."""


class NoActiveGeneration(ProjectionError):
    """The projection has no active generation (it was never started)."""


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
