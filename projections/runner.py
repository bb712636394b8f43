"""The projection worker: consumes the stream in order and applies it batch by batch.

It reads with an ephemeral pull consumer, asking for the next messages by bounded requests (at
most ``fetch_bytes`` each, see :mod:`projections.feed`), starting at checkpoint + 1: however long
a catch-up batch keeps the worker from reading, the server holds at most one request's worth for
it, so it never cuts the connection as a slow consumer. Messages go to a bounded buffer, and a
writer takes batches bounded by count, bytes and linger time while the next messages keep
arriving (fetch overlaps the database write). Far behind the head, batches grow to the catch-up
size.

Backpressure: when the buffer is full the worker stops the consumer, and once the writer has
drained half of it, reads again from the message after the last one received, keeping the
buffer.

Guards: a sequence gap (which the stream, without interior deletes, never has: a lost delivery)
and a consumer that stopped delivering (deleted by a server restart) both make the worker read
again from its checkpoint; a watchdog notices no progress while the stream has more.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
import sqlalchemy as sa
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from events.subjects import ALL_SUBJECTS, STREAM
from projections import metrics
from projections.errors import DatabaseError, ProjectionError
from projections.feed import PullFeed
from projections.infra import GenerationState
from projections.infra import status as status_table
from projections.lease import LEASE_SECONDS
from projections.locks import WriterLock
from projections.partitions import community_of_subject, partition_of
from projections.store import (
    BatchOutcome,
    Fenced,
    FoldFailed,
    FoldPolicy,
    ProjectionStore,
    RawMessage,
)

log = structlog.get_logger("agora.projections")

#: Seconds over which a worker's events/s (its status row, build progress) is counted.
RATE_WINDOW = 60.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class WorkerSettings:
    """Tuning of one worker; the defaults suit both the embedded stack and PostgreSQL."""

    max_events: int = 1000
    """Largest batch near the head (live)."""
    catchup_max_events: int = 5000
    """Largest batch when catching up."""
    catchup_threshold: int = 10_000
    """Pending events beyond which the worker is catching up."""
    max_bytes: int = 4 * 1024 * 1024
    """Largest batch in payload bytes."""
    linger: float = 0.005
    """Seconds a batch waits to fill once its first message is there (when the writer is idle)."""
    catchup_linger: float = 0.05
    """The same when catching up: long enough to fill a catch-up batch, whose fixed costs (a
    transaction, a statement per table) are then shared by more events."""
    buffer_events: int = 20_000
    """Messages buffered ahead of the writer before the consumer is paused."""
    client_pending_msgs: int | None = None
    """nats-py's queue for the subscription (default 4 x ``buffer_events``); beyond it the
    client drops messages, which the worker sees as a sequence gap."""
    fetch_bytes: int = 1024 * 1024
    """Bytes asked of the server per pull request: what it may have sent that the worker has
    not read yet. Keep (partitions per process) x this well below the server's ``max_pending``
    (64 MiB by default)."""
    inline_catchup: bool = True
    """Apply catch-up batches on the event loop's thread rather than in a worker thread.

    Receiving and writing share one GIL; in a thread, a catch-up write took twice as long and a
    replay ran 20-35 % slower (docs/benchmarks.md). Near the head batches always go to a worker
    thread, so receiving goes on during the write. The loop is blocked for one batch at a time."""
    fold_policy: FoldPolicy = FoldPolicy.HOLD
    """What a fold exception does: park the event's community and hold its later events while
    the others go on (default), pause the whole partition, or dead-letter the event alone."""
    stall_timeout: float = 10.0
    """Seconds without a message, while the stream has more, before resubscribing."""
    idle_heartbeat: float = 2.0
    """Consumer heartbeat interval asked of the server."""
    status_interval: float = 2.0
    """Seconds between status-row updates."""
    lock_poll: float = 0.5
    """Seconds between attempts to take the writer lock held by another worker."""
    lease: float = LEASE_SECONDS
    """Seconds a partition's owner may go without renewing its lease (it does so every status
    interval) before a waiting worker takes the partition over: the bound on a frozen owner."""
    db_retry: float = 1.0
    """Seconds between retries while the database is unreachable."""


class WorkerState(enum.StrEnum):
    """What a worker is doing, as `agora status` shows it."""

    WAITING = "waiting"
    CATCHING_UP = "catching_up"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


def _parse_reply(reply: str) -> tuple[int, int, int] | None:
    """(stream seq, timestamp ns, pending) from a JetStream ack subject, v1 or v2 format."""
    tokens = reply.split(".")
    n = len(tokens)
    if n == 9:
        return int(tokens[5]), int(tokens[7]), int(tokens[8])
    if n >= 11:
        return int(tokens[7]), int(tokens[9]), int(tokens[10])
    return None


@dataclass
class Progress:
    """Counters a worker keeps for status, metrics and tests."""

    applied_seq: int = 0
    received_seq: int = 0
    pending: int = 0
    events: int = 0
    batches: int = 0
    resubscribes: int = 0
    pauses: int = 0
    """Times the consumer was stopped because the buffer was full (backpressure)."""
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    """The worker's monotonic clock, in seconds (a test may drive it)."""
    window: float = RATE_WINDOW
    """Seconds over which :meth:`rate` counts events."""
    started: float = field(default=-1.0)
    _marks: deque[tuple[float, int]] = field(default_factory=deque, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()
        self._marks.append((self.started, 0))

    def count(self, events: int) -> None:
        """Count ``events`` applied now."""
        self.events += events
        now = self.clock()
        marks = self._marks
        if now - marks[-1][0] < 1.0 and len(marks) > 1:
            marks[-1] = (marks[-1][0], self.events)  # one mark per second is precise enough
        else:
            marks.append((now, self.events))
        self._forget(now)

    def _forget(self, now: float) -> None:
        # Keep one mark at or before the window's start: the count the window starts from.
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= now - self.window:
            marks.popleft()

    def rate(self) -> float:
        """Events applied per second over the last ``window`` seconds (or since the start)."""
        now = self.clock()
        self._forget(now)
        since, base = self._marks[0]
        if since < now - self.window:
            since = now - self.window
        elapsed = now - since
        return (self.events - base) / elapsed if elapsed > 0 else 0.0


class Worker:
    """Applies one partition of one generation of a projection, as the only writer."""

    def __init__(
        self,
        js: JetStreamContext,
        store: ProjectionStore,
        *,
        generation: int,
        partition: int = 0,
        partitions: int = 1,
        settings: WorkerSettings | None = None,
        stream: str = STREAM,
        on_batch: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.js = js
        self.store = store
        self.generation = generation
        self.partition = partition
        self.partitions = partitions
        self.settings = settings or WorkerSettings()
        self.stream = stream
        self.on_batch = on_batch
        self.name = store.projection.name
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.state = WorkerState.WAITING
        self.error: str | None = None
        self.progress = Progress(clock=clock)
        self._buffer: list[RawMessage] = []
        self._buffer_bytes = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._gap = False
        self._paused = False
        self._detached: set[asyncio.Task[None]] = set()
        # Writes running in a thread. Cancelling the worker cannot stop a thread: run() waits for
        # them before its last status write, which a late "running" would otherwise overwrite.
        self._writing: set[asyncio.Future[Any]] = set()
        self._sub: PullFeed | None = None
        self._last_activity = time.monotonic()
        self._last_status = 0.0
        self._labels = (self.name, str(partition))
        self._lock = WriterLock(
            store.engine, self.name, generation, partition, lease=self.settings.lease
        )
        self._stop = asyncio.Event()
        self._until: int | None = None
        self._ended = False
        self._parked_labels: set[str] = set()

    # -- receiving ---------------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        meta = _parse_reply(msg.reply) if msg.reply else None
        if meta is None:
            return
        seq, timestamp, pending = meta
        progress = self.progress
        if seq <= progress.received_seq:
            return  # already received (a late message of a consumer replaced since)
        if progress.received_seq and seq != progress.received_seq + 1 and not self._gap:
            # The stream has no interior gaps (deny_delete), so a jump means a lost delivery.
            # Everything after it is discarded: stop the subscription at once, so the server does
            # not push the rest of the stream into the void while the writer catches up.
            self._gap = True
            self._arrived.set()
            self._detach()
            return
        if self._gap:
            return
        progress.received_seq = seq
        progress.pending = pending
        self._last_activity = time.monotonic()
        if (
            self.partitions == 1
            or partition_of(community_of_subject(msg.subject), self.partitions) == self.partition
        ):
            self._buffer.append(RawMessage(seq, msg.subject, msg.data, timestamp))
            self._buffer_bytes += len(msg.data)
        self._arrived.set()
        limit = self._batch_limit()
        if len(self._buffer) >= limit or self._buffer_bytes >= self.settings.max_bytes:
            self._full.set()
        if len(self._buffer) >= self.settings.buffer_events and not self._paused:
            # Backpressure (see the module docstring): stop this consumer; _loop resumes.
            self._paused = True
            progress.pauses += 1
            self._detach()

    def _catching_up(self) -> bool:
        return self.progress.pending > self.settings.catchup_threshold

    def _batch_limit(self) -> int:
        if self._catching_up():
            return self.settings.catchup_max_events
        return self.settings.max_events

    async def _subscribe(self) -> None:
        """Start over from the checkpoint: drop the buffer, subscribe from checkpoint + 1."""
        await self._unsubscribe()
        self._buffer.clear()
        self._buffer_bytes = 0
        self._gap = False
        self._paused = False
        self.progress.received_seq = self.progress.applied_seq
        await self._open(self.progress.applied_seq + 1)

    async def _resume(self) -> None:
        """After a backpressure pause: subscribe from the message after the last received."""
        try:
            await self._open(self.progress.received_seq + 1)
        except ProjectionError as error:
            log.warning("resume failed", projection=self.name, error=str(error))
            await self._resubscribe("resume failed")
            return
        self._paused = False

    async def _open(self, start: int) -> None:
        await self._unsubscribe()
        settings = self.settings
        feed = PullFeed(
            self.js,
            self.stream,
            start,
            self._on_message,
            on_gone=self._consumer_gone,
            filter_subject=ALL_SUBJECTS,
            batch=max(settings.catchup_max_events, settings.max_events),
            max_bytes=settings.fetch_bytes,
            expires=max(5.0, settings.idle_heartbeat * 5),
            heartbeat=settings.idle_heartbeat,
            pending_msgs_limit=settings.client_pending_msgs or settings.buffer_events * 4,
        )
        try:
            await feed.open()
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as error:
            await feed.close()
            raise ProjectionError(f"cannot subscribe to {self.stream}: {error}") from error
        self._sub = feed
        self._last_activity = time.monotonic()

    def _consumer_gone(self) -> None:
        """The consumer is gone (a server restart): read again from the checkpoint, as after a
        sequence gap."""
        self._gap = True
        self._arrived.set()

    def _detach(self) -> None:
        """Stop the current subscription from its own callback (it cannot await its end)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            task = asyncio.get_running_loop().create_task(_quietly_unsubscribe(sub))
            self._detached.add(task)
            task.add_done_callback(self._detached.discard)

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        await _quietly_unsubscribe(sub)

    async def _resubscribe(self, reason: str) -> None:
        self.progress.resubscribes += 1
        metrics.RESUBSCRIBES.labels(*self._labels, reason).inc()
        log.warning(
            "resubscribing",
            projection=self.name,
            partition=self.partition,
            reason=reason,
            from_seq=self.progress.applied_seq + 1,
        )
        while not self._stop.is_set():
            try:
                await self._subscribe()
                return
            except ProjectionError as error:
                log.warning("subscribe failed", projection=self.name, error=str(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.db_retry)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None, until_seq: int | None = None) -> None:
        """Run until ``stop`` is set, ``until_seq`` is applied, or a fold error pauses it.

        With ``until_seq`` the checkpoint stops exactly there: later messages are left to the
        next run.
        """
        stop = stop or asyncio.Event()
        self._stop = stop
        self._until = until_seq
        owner = False
        try:
            if not await self._acquire(stop):
                return
            owner = True
            await asyncio.to_thread(self.store.check_layout, self.generation)
            self.progress.applied_seq = await asyncio.to_thread(
                self.store.checkpoint, self.generation, self.partition
            )
            self.progress.received_seq = self.progress.applied_seq
            metrics.CHECKPOINT.labels(*self._labels).set(self.progress.applied_seq)
            self.state = WorkerState.RUNNING
            await self._write_status()
            await self._resubscribe_quietly()
            await self._loop(stop, until_seq)
        finally:
            await self._unsubscribe()
            if self._detached:
                await asyncio.gather(*self._detached, return_exceptions=True)
            if self._writing:
                await asyncio.gather(*self._writing, return_exceptions=True)
            if self.state is not WorkerState.PAUSED:
                self.state = WorkerState.STOPPED
            # A worker that only waited for the lock (or lost it) must not overwrite the owner's.
            if owner and self._lock.held:
                with contextlib.suppress(Exception):
                    # The last word on this partition: a transient database error must not
                    # leave "running" behind for a worker that has stopped.
                    for _ in range(3):
                        if await self._write_status():
                            break
            self._lock.release()

    async def _resubscribe_quietly(self) -> None:
        try:
            await self._subscribe()
        except ProjectionError:
            await self._resubscribe("subscribe failed")

    async def _acquire(self, stop: asyncio.Event) -> bool:
        self.state = WorkerState.WAITING
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self._lock.try_acquire):
                    log.info(
                        "writer lock taken",
                        projection=self.name,
                        generation=self.generation,
                        partition=self.partition,
                    )
                    return True
            except DatabaseError as error:
                log.warning("writer lock unavailable", projection=self.name, error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.lock_poll)
        return False

    async def _loop(self, stop: asyncio.Event, until_seq: int | None) -> None:
        settings = self.settings
        while not stop.is_set() and not self._ended:
            if until_seq is not None and self.progress.applied_seq >= until_seq:
                return
            if self._paused and not self._gap and len(self._buffer) <= settings.buffer_events // 2:
                await self._resume()
                continue
            if self._gap:
                # Apply what arrived before the gap, then read again from the checkpoint.
                if self._buffer or self.progress.received_seq > self.progress.applied_seq:
                    await self._apply_next()
                    if self.state is WorkerState.PAUSED:
                        await self._unsubscribe()
                        await stop.wait()
                        return
                else:
                    await self._resubscribe("sequence gap")
                continue
            if not self._buffer and self.progress.received_seq <= self.progress.applied_seq:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), min(1.0, settings.stall_timeout))
                except TimeoutError:
                    if self._sub is not None:
                        await self._sub.nudge()
                    await self._watchdog()
                    await self._maybe_write_status()
                    continue
                if stop.is_set():
                    return
            if len(self._buffer) < self._batch_limit() and not self._full.is_set():
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._full.wait(),
                        settings.catchup_linger if self._catching_up() else settings.linger,
                    )
            await self._apply_next()
            if self.state is WorkerState.PAUSED:
                await self._unsubscribe()
                await stop.wait()
                return

    async def _apply_next(self) -> None:
        limit = self._batch_limit()
        batch = self._buffer[:limit]
        until = self._until
        if until is not None and batch and batch[-1].seq > until:
            batch = [m for m in batch if m.seq <= until]
        del self._buffer[: len(batch)]
        self._buffer_bytes -= sum(len(m.data) for m in batch)
        self._full.clear()
        # Every sequence before the next buffered message was received: this partition's are in
        # the batch, the others belong to other partitions, so the checkpoint may pass them.
        through = self._buffer[0].seq - 1 if self._buffer else self.progress.received_seq
        if until is not None:
            through = min(through, until)
        if through <= self.progress.applied_seq:
            return
        if self._lock.overdue() and not await asyncio.to_thread(self._lock.alive):
            # Stopped or stalled for longer than the lease: a standby may own the partition.
            log.warning("writer lease lost", projection=self.name, partition=self.partition)
            await self._recover_checkpoint()
            return
        started = time.monotonic()
        args = (
            self.generation,
            self.partition,
            self.progress.applied_seq,
            batch,
            self.settings.fold_policy,
            through,
        )
        try:
            if self.settings.inline_catchup and self._catching_up():
                # Far behind, the write is the bottleneck: run it on this thread. In a worker
                # thread it competed with the receiving for the GIL and took twice as long.
                outcome = self.store.apply(*args)
            else:
                outcome = await self._write_in_thread(self.store.apply, *args)
        except FoldFailed as error:
            self.state = WorkerState.PAUSED
            self.error = str(error)
            metrics.PAUSED.labels(*self._labels).set(1)
            log.error(
                "projection paused",
                projection=self.name,
                partition=self.partition,
                error=str(error),
            )
            await self._write_status()
            return
        except Fenced as error:
            log.warning("fenced", projection=self.name, error=str(error))
            await self._recover_checkpoint()
            return
        except DatabaseError as error:
            if await self._generation_dropped():
                log.warning(
                    "generation dropped: the worker ends",
                    projection=self.name,
                    generation=self.generation,
                    partition=self.partition,
                )
                self._ended = True
                return
            log.warning("database error; retrying from the checkpoint", error=str(error))
            await asyncio.sleep(self.settings.db_retry)
            await self._recover_checkpoint()
            return
        elapsed = time.monotonic() - started
        progress = self.progress
        progress.applied_seq = outcome.last_seq
        progress.count(len(batch))
        progress.batches += 1
        self.state = WorkerState.CATCHING_UP if self._catching_up() else WorkerState.RUNNING
        labels = self._labels
        metrics.EVENTS.labels(*labels).inc(len(batch))
        metrics.DUPLICATES.labels(*labels).inc(outcome.duplicates)
        metrics.DEAD_LETTERS.labels(*labels).inc(outcome.dead_letters)
        metrics.CHECKPOINT.labels(*labels).set(outcome.last_seq)
        metrics.LAG.labels(*labels).set(progress.pending + len(self._buffer))
        metrics.BATCH_SECONDS.labels(*labels).observe(elapsed)
        metrics.BATCH_EVENTS.labels(*labels).observe(len(batch))
        self._report_parked(outcome)
        log.debug(
            "batch applied",
            projection=self.name,
            partition=self.partition,
            events=len(batch),
            last_seq=outcome.last_seq,
            duplicates=outcome.duplicates,
            dead_letters=outcome.dead_letters,
            held=outcome.held,
            seconds=round(elapsed, 4),
        )
        if self.on_batch is not None:
            self.on_batch(progress)
        await self._maybe_write_status()

    def _report_parked(self, outcome: BatchOutcome) -> None:
        """Parked-community gauges, and one log line for a batch that parked or held events."""
        now = {p.community: p for p in outcome.parked}
        for community in self._parked_labels - now.keys():
            metrics.PARKED_FIRST_SEQ.remove(self.name, str(self.generation), community)
            metrics.HELD.remove(self.name, str(self.generation), community)
        for community, p in now.items():
            labels = (self.name, str(self.generation), community)
            metrics.PARKED_FIRST_SEQ.labels(*labels).set(p.first_seq)
            metrics.HELD.labels(*labels).set(p.held)
        self._parked_labels = set(now)
        if outcome.newly_parked:
            log.error(
                "communities parked: their later events are held until retried or skipped",
                projection=self.name,
                partition=self.partition,
                communities=list(outcome.newly_parked),
                first_seqs=[now[c].first_seq for c in outcome.newly_parked],
                held=outcome.held,
            )
        elif outcome.held:
            log.info(
                "events of parked communities held",
                projection=self.name,
                partition=self.partition,
                held=outcome.held,
                communities=sorted(now),
            )

    async def _generation_dropped(self) -> bool:
        """Whether this worker's generation was dropped (its tables are gone for good)."""
        try:
            rows = await asyncio.to_thread(self.store.generations)
        except (DatabaseError, sa.exc.SQLAlchemyError):
            return False
        state = next((r.state for r in rows if r.generation == self.generation), None)
        return state in (None, GenerationState.DROPPED)

    async def _recover_checkpoint(self) -> None:
        """Re-read the checkpoint (holding the lock, taken again if lost) and resubscribe."""
        stop = self._stop
        while not stop.is_set():
            try:
                if not await asyncio.to_thread(self._lock.alive):
                    log.warning("writer lock lost; waiting to take it again", projection=self.name)
                    if not await self._acquire(stop):
                        return
                    self.state = WorkerState.RUNNING
                self.progress.applied_seq = await asyncio.to_thread(
                    self.store.checkpoint, self.generation, self.partition
                )
                break
            except (DatabaseError, sa.exc.SQLAlchemyError) as error:
                log.warning("waiting for the database", error=str(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.db_retry)
        else:
            return
        await self._resubscribe("checkpoint recovered")

    async def _watchdog(self) -> None:
        """No message for a while: resubscribe if the stream has more than we received."""
        if time.monotonic() - self._last_activity < self.settings.stall_timeout:
            return
        try:
            info = await self.js.stream_info(self.stream)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as error:
            log.warning("stream info failed", error=str(error))
            return
        self._last_activity = time.monotonic()
        if info.state.last_seq > self.progress.received_seq:
            await self._resubscribe("stalled while the stream has more")

    async def _maybe_write_status(self) -> None:
        """Every status interval: check the writer lock is still ours (renewing its lease), and
        write the status row.

        A PostgreSQL session can die under the worker (a restart, a proxy, an administrator):
        its advisory lock goes with it, and another worker may take the partition; so may a
        standby once the lease expired (this process was frozen). The fence keeps the data
        right regardless; this takes the lock again (or waits for it).
        """
        if time.monotonic() - self._last_status >= self.settings.status_interval:
            try:
                alive = await asyncio.to_thread(self._lock.alive)
            except DatabaseError:  # pragma: no cover - alive() reports, it does not raise
                alive = False
            if not alive:
                self._last_status = time.monotonic()
                log.warning("writer lock lost", projection=self.name, partition=self.partition)
                await self._recover_checkpoint()
                return
            await self._write_status()

    async def _write_in_thread(self, write: Callable[..., _T], *args: Any) -> _T:
        """Run a database write in a thread; if the worker is cancelled meanwhile, it goes on.

        The caller sees the cancellation at once; :meth:`run` waits for the write to end.
        """
        future = asyncio.ensure_future(asyncio.to_thread(write, *args))
        self._writing.add(future)
        future.add_done_callback(self._writing.discard)
        return await asyncio.shield(future)

    async def _write_status(self) -> bool:
        """Write this worker's status row; return whether it was written."""
        self._last_status = time.monotonic()
        row = {
            "projection": self.name,
            "generation": self.generation,
            "partition": self.partition,
            "state": self.state.value,
            "error": self.error,
            "worker": self.worker_id,
            "rate": round(self.progress.rate(), 1),
            "updated_at": datetime.now(UTC),
        }
        try:
            await self._write_in_thread(_upsert_status, self.store.engine, row)
        except sa.exc.SQLAlchemyError as error:
            log.warning("status not written", error=str(error))
            return False
        return True


def _upsert_status(engine: sa.Engine, row: dict[str, object]) -> None:
    key = {k: row[k] for k in ("projection", "generation", "partition")}
    with engine.begin() as conn:
        updated = conn.execute(
            status_table.update()
            .where(
                status_table.c.projection == key["projection"],
                status_table.c.generation == key["generation"],
                status_table.c.partition == key["partition"],
            )
            .values(**{k: v for k, v in row.items() if k not in key})
        ).rowcount
        if not updated:
            conn.execute(status_table.insert().values(**row))


async def _quietly_unsubscribe(sub: PullFeed | None) -> None:
    if sub is not None:
        with contextlib.suppress(Exception):
            await sub.close()
