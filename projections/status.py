"""Reading where projections are: checkpoints, lag, state, dead letters; waiting for a sequence."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from projections.database import reader
from projections.errors import ProjectionError
from projections.infra import GenerationState, checkpoints, dead_letters, generations, parked
from projections.infra import status as status_table


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """One partition of one generation of a projection, as the database records it."""

    projection: str
    generation: int
    version: int
    generation_state: str
    partition: int
    checkpoint: int
    events: int
    duplicates: int
    dead_letters: int
    worker_state: str | None
    error: str | None
    worker: str | None
    rate: float | None
    updated_at: str | None


def read_status(engine: Engine, projection: str | None = None) -> list[PartitionStatus]:
    """Every partition of every live generation (building, active, retired)."""
    with reader(engine).connect() as conn:
        if not sa.inspect(conn).has_table(checkpoints.name):
            return []
        query = (
            sa.select(
                checkpoints.c.projection,
                checkpoints.c.generation,
                checkpoints.c.version,
                generations.c.state.label("generation_state"),
                checkpoints.c.partition,
                checkpoints.c.last_seq,
                checkpoints.c.events,
                checkpoints.c.duplicates,
                checkpoints.c.dead_letters,
                status_table.c.state,
                status_table.c.error,
                status_table.c.worker,
                status_table.c.rate,
                status_table.c.updated_at,
            )
            .join(
                generations,
                (generations.c.projection == checkpoints.c.projection)
                & (generations.c.generation == checkpoints.c.generation),
            )
            .outerjoin(
                status_table,
                (status_table.c.projection == checkpoints.c.projection)
                & (status_table.c.generation == checkpoints.c.generation)
                & (status_table.c.partition == checkpoints.c.partition),
            )
            .where(generations.c.state != GenerationState.DROPPED)
            .order_by(checkpoints.c.projection, checkpoints.c.generation, checkpoints.c.partition)
        )
        if projection is not None:
            query = query.where(checkpoints.c.projection == projection)
        rows = conn.execute(query).all()
    return [
        PartitionStatus(
            projection=r.projection,
            generation=r.generation,
            version=r.version,
            generation_state=r.generation_state,
            partition=r.partition,
            checkpoint=int(r.last_seq),
            events=int(r.events),
            duplicates=int(r.duplicates),
            dead_letters=int(r.dead_letters),
            worker_state=r.state,
            error=r.error,
            worker=r.worker,
            rate=r.rate,
            updated_at=r.updated_at.isoformat() if r.updated_at is not None else None,
        )
        for r in rows
    ]


def active_checkpoints(engine: Engine, projection: str) -> list[int]:
    """Checkpoints of the active generation's partitions (empty if none is active)."""
    with reader(engine).connect() as conn:
        if not sa.inspect(conn).has_table(checkpoints.name):
            return []
        rows = conn.execute(
            sa.select(checkpoints.c.last_seq)
            .join(
                generations,
                (generations.c.projection == checkpoints.c.projection)
                & (generations.c.generation == checkpoints.c.generation),
            )
            .where(
                checkpoints.c.projection == projection,
                generations.c.state == GenerationState.ACTIVE,
            )
        ).all()
    return [int(r[0]) for r in rows]


async def wait_for(
    engine: Engine, projection: str, seq: int, timeout: float, poll: float = 0.01
) -> None:
    """Wait until every partition of the active generation has applied stream sequence ``seq``.

    For read-your-writes in services and tests: publish, take the PubAck's sequence, wait for it.
    Raises TimeoutError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        points = await asyncio.to_thread(active_checkpoints, engine, projection)
        if points and min(points) >= seq:
            return
        if time.monotonic() >= deadline:
            have = min(points) if points else None
            raise TimeoutError(f"{projection} did not reach seq {seq} in {timeout}s (at {have})")
        await asyncio.sleep(poll)


def dead_letter_rows(
    engine: Engine, projection: str | None = None, limit: int = 100
) -> list[sa.Row[tuple[object, ...]]]:
    """The oldest dead letters (all columns but the raw bytes)."""
    columns = [c for c in dead_letters.c if c.name != "raw"]
    query = sa.select(*columns).order_by(dead_letters.c.projection, dead_letters.c.seq).limit(limit)
    if projection is not None:
        query = query.where(dead_letters.c.projection == projection)
    with reader(engine).connect() as conn:
        if not sa.inspect(conn).has_table(dead_letters.name):
            return []
        return list(conn.execute(query).all())


def dead_letter(engine: Engine, projection: str, seq: int) -> sa.Row[tuple[object, ...]]:
    """One dead letter of the active or any generation, raw bytes included."""
    with reader(engine).connect() as conn:
        row = conn.execute(
            sa.select(dead_letters)
            .where(dead_letters.c.projection == projection, dead_letters.c.seq == seq)
            .order_by(dead_letters.c.generation.desc())
        ).first()
    if row is None:
        raise ProjectionError(f"no dead letter of {projection} at seq {seq}")
    return row


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """A parked community: its events wait behind a poison event (see docs/operations.md)."""

    projection: str
    generation: int
    partition: int
    community: str
    first_seq: int
    """The poison event's stream sequence (a dead letter of kind ``fold``)."""
    error: str
    since: datetime
    """The poison message's stream timestamp."""
    occurred_at: datetime
    """The poison event's event time: the community's figures stop there."""
    held: int
    """Later events of the community held back, in order."""


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parked_rows(engine: Engine, projection: str | None = None) -> list[ParkedRow]:
    """Every parked community of every generation, by projection, generation and community."""
    query = sa.select(parked).order_by(parked.c.projection, parked.c.generation, parked.c.community)
    if projection is not None:
        query = query.where(parked.c.projection == projection)
    with reader(engine).connect() as conn:
        if not sa.inspect(conn).has_table(parked.name):
            return []
        rows = conn.execute(query).all()
    return [
        ParkedRow(
            projection=r.projection,
            generation=r.generation,
            partition=r.partition,
            community=r.community,
            first_seq=int(r.first_seq),
            error=f"{r.error_class}: {r.error_message}",
            since=_utc(r.since),
            occurred_at=_utc(r.occurred_at),
            held=int(r.held),
        )
        for r in rows
    ]
