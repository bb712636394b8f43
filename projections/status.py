"""Reading where projections are: checkpoints, lag, state, dead letters; waiting for a sequence.

The status of a partition joins what the database records (checkpoint, worker state, rate) with
the stream (its head, and the time the oldest event not applied yet was stored): its lag in events
and in age. A partition of a live generation (active or building) is healthy unless its worker is
paused by a fold error or stale (a running worker that stopped writing its status: killed,
frozen, cut off), and unless one of its communities is parked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
import sqlalchemy as sa
from nats.js import JetStreamContext
from sqlalchemy.engine import Engine

from events.subjects import STREAM
from projections.database import reader
from projections.errors import ProjectionError
from projections.infra import GenerationState, checkpoints, dead_letters, generations, parked
from projections.infra import status as status_table
from projections.stream import stream_head

#: Generation states whose partitions count for health (retired ones are history).
LIVE_STATES = frozenset({GenerationState.ACTIVE, GenerationState.BUILDING})
#: Seconds after which the status row of a working worker is stale: its process is likely gone or
#: frozen (workers write it every ``WorkerSettings.status_interval``, 2 s by default).
STALE_AFTER = 30.0
#: Worker states that promise a fresh status row.
WORKING_STATES = frozenset({"running", "catching_up", "waiting"})


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
    updated_at: datetime | None
    """When the worker last wrote its status (aware, UTC), or None."""


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
            updated_at=r.updated_at,
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
            since=r.since,
            occurred_at=r.occurred_at,
            held=int(r.held),
        )
        for r in rows
    ]


# -- lag against the stream ----------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    """A status timestamp as an aware datetime (SQLite returns them naive, in UTC)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One partition of one generation, with its lag against the stream's head."""

    projection: str
    generation: int
    version: int
    generation_state: str
    partition: int
    checkpoint: int
    stream_last_seq: int | None
    lag_events: int | None
    lag_seconds: float | None
    rate: float | None
    worker_state: str | None
    stale: bool
    error: str | None
    worker: str | None
    dead_letters: int
    events: int
    duplicates: int
    updated_at: str | None

    @property
    def live(self) -> bool:
        """True for a partition of an active or building generation."""
        return self.generation_state in LIVE_STATES

    @property
    def paused(self) -> bool:
        """True when a live partition is paused by a fold error."""
        return self.worker_state == "paused" and self.live

    @property
    def stale_live(self) -> bool:
        """True when a live partition's worker says it works but stopped writing its status."""
        return self.stale and self.live


def healthy(rows: Sequence[StatusRow], parked: Sequence[ParkedRow]) -> bool:
    """No live partition paused or stale, no community parked (the stream's state aside)."""
    return not parked and not any(r.paused or r.stale_live for r in rows)


async def lag_age(
    js: JetStreamContext, checkpoint: int, now: datetime | None = None, stream: str = STREAM
) -> float | None:
    """Seconds since the oldest event not applied yet (the one after ``checkpoint``) was stored.

    None when there is no such message: the checkpoint is at the head (caught up).
    """
    try:
        message = await js.get_msg(stream, checkpoint + 1)
    except nats.js.errors.NotFoundError:
        return None
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as error:
        raise ProjectionError(f"cannot read stream message {checkpoint + 1}: {error}") from error
    if message.time is None:
        return None
    stored = message.time if message.time.tzinfo else message.time.replace(tzinfo=UTC)
    return max(0.0, ((now or datetime.now(UTC)) - stored).total_seconds())


async def with_lag(
    js: JetStreamContext | None,
    partitions: Sequence[PartitionStatus],
    now: datetime | None = None,
    expired: Collection[tuple[str, int, int]] = (),
) -> tuple[int | None, list[StatusRow]]:
    """The stream head and each partition's lag (in events and seconds); no NATS: no lag.

    One request for the head, then one per distinct lagging checkpoint, all at once. A working
    partition is stale when its status row is older than ``STALE_AFTER`` or its writer lease is
    in ``expired`` (projection, generation, partition): its owner is gone or frozen, and a standby
    takes it over.
    """
    now = now or datetime.now(UTC)
    head = await stream_head(js, patience=0) if js is not None else None
    ages: dict[int, float | None] = {}
    if js is not None and head is not None:
        behind = sorted({p.checkpoint for p in partitions if p.checkpoint < head})
        found = await asyncio.gather(*(lag_age(js, c, now) for c in behind))
        ages = dict(zip(behind, found, strict=True))
    rows: list[StatusRow] = []
    for p in partitions:
        lag = max(head - p.checkpoint, 0) if head is not None else None
        age = 0.0 if lag == 0 else ages.get(p.checkpoint)
        updated = p.updated_at
        stale = p.worker_state in WORKING_STATES and (
            (updated is not None and (now - updated).total_seconds() > STALE_AFTER)
            or (p.projection, p.generation, p.partition) in expired
        )
        rows.append(
            StatusRow(
                projection=p.projection,
                generation=p.generation,
                version=p.version,
                generation_state=p.generation_state,
                partition=p.partition,
                checkpoint=p.checkpoint,
                stream_last_seq=head,
                lag_events=lag,
                lag_seconds=round(age, 3) if age is not None else None,
                rate=p.rate,
                worker_state=p.worker_state,
                stale=stale,
                error=p.error,
                worker=p.worker,
                dead_letters=p.dead_letters,
                events=p.events,
                duplicates=p.duplicates,
                updated_at=updated.isoformat().replace("+00:00", "Z") if updated else None,
            )
        )
    return head, rows
