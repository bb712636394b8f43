"""The auto-hide reactor: publishes ``content.hidden`` for crossings the queue marked, once each.

The moderation projection marks an item when a report makes its score cross ``auto_hide_score``
(``auto_hide_due_at_seq``: the sequence of that report). The reactor reads those marks -- only
from the *active* generation, through the stable views -- and publishes one ``content.hidden``
(actor ``system``, rule ``auto_hide.score``) per crossing. The projection folds that event, after
which the item is no longer a candidate.

Exactly once per crossing, by three rules:

1. **A deterministic event.** The id is ``keyed_event_id(id_key, "moderation", "auto_hide",
   community, kind, target, round, crossing seq)`` and the event time is the crossing report's
   event time, so every (re-)publish of a crossing is byte-for-byte the same event: the stream's
   duplicate window drops a second copy, and every projection's seen-table would skip one even
   after the window. The id is keyed with the deployment's secret id key (``AGORA_ID_KEY``): its
   parts are public, and an id a producer could compute is one it could publish first, making the
   real hide a "duplicate" that is never stored. The publisher checks every duplicate against the
   stored copy anyway; a hide whose id names another message is a *conflict*, logged as an error
   and counted, never taken for done.
2. **The fence.** The reactor acts only when the active generation has applied everything up to
   its *fence*: the stream's last sequence when the reactor started (anything an earlier
   incarnation published), raised to the sequence of every hide it publishes since. So a hide it
   (or a predecessor) already stored is folded -- and the item no longer a candidate -- before the
   reactor looks again; a restart, a lagging generation forced active or a rollback make it wait,
   not re-publish. After a publish that failed (its ack lost: maybe stored, at an unknown
   sequence) the fence moves to the stream's head.
3. **Only the active generation.** A replay or a rebuild folds into a generation that is not
   active; the reactor never reads it. The rebuilt generation is swapped in only once caught up,
   with the hides already folded.

Crossings whose event time is older than ``max_age`` are left alone (an imported history, a first
deployment over an old stream): the reactor hides what crosses now, not what crossed long ago.

The reactor keeps no state of its own: killing it at any point and starting it again is safe.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, Protocol

import structlog

from events.catalogue import ContentHidden, Event
from events.ids import keyed_event_id
from events.limits import SYSTEM_ACTOR
from events.publisher import PublishResult, PublishStatus
from services.errors import InvalidSetting
from services.moderation.readside import HideCandidate, HideCandidates

_log = structlog.get_logger("services.moderation.reactor")

RULE: Final = "auto_hide.score"
"""The ``rule`` of the hides the reactor publishes."""

DEFAULT_MAX_AGE: Final = timedelta(days=1)
"""Crossings older than this (event time) are not acted on."""


class BatchPublisher(Protocol):
    """What the reactor needs of :class:`events.publisher.Publisher`."""

    async def publish_many(self, events: Iterable[Event]) -> list[PublishResult]:
        """Publish events; one acknowledged (or FAILED) result per event, in order."""
        ...


class SweepState(enum.StrEnum):
    """What one sweep did."""

    NO_GENERATION = "no_generation"
    """No generation of the projection is active yet."""
    WAITING = "waiting"
    """The active generation has not applied the fence yet: nothing read, nothing published."""
    IDLE = "idle"
    """Caught up to the fence; no candidate."""
    PUBLISHED = "published"
    """Published hides for the candidates found (see the counts)."""


@dataclass(frozen=True, slots=True)
class Sweep:
    """The outcome of one sweep."""

    state: SweepState
    applied: int | None
    fence: int
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    conflicts: int = 0


@dataclass(slots=True)
class ReactorStats:
    """Totals since the reactor started."""

    sweeps: int = 0
    attempts: int = 0
    """Hide events handed to the publisher (each stored, duplicate or failed)."""
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    conflicts: int = 0
    """Hides whose id the stream already held for another message (never stored)."""


def hide_event_id(candidate: HideCandidate, key: bytes) -> uuid.UUID:
    """The id of a crossing's hide: the same for every attempt, process and replay.

    Keyed with the deployment's id key, so no producer can compute it (and squat it) first.
    """
    return keyed_event_id(
        key,
        "moderation",
        "auto_hide",
        candidate.community,
        candidate.target_kind,
        candidate.target,
        str(candidate.round),
        str(candidate.crossed_seq),
    )


def hide_event(candidate: HideCandidate, key: bytes) -> ContentHidden:
    """The ``content.hidden`` of a crossing: a pure function of it and the key (id, time, note)."""
    points = Decimal(candidate.score) / 1000
    return ContentHidden(
        id=hide_event_id(candidate, key),
        community=candidate.community,
        actor=SYSTEM_ACTOR,
        occurred_at=candidate.crossed_at.astimezone(UTC),
        target=candidate.target,
        target_kind="post" if candidate.target_kind == "post" else "reply",
        target_author=candidate.target_author,
        rule=RULE,
        note=(
            f"score {points:.3f} reached the auto-hide threshold with the report at stream "
            f"sequence {candidate.crossed_seq} (round {candidate.round})"
        ),
    )


class Reactor:
    """Follows the moderation queue's auto-hide marks and publishes their ``content.hidden``.

    ``head`` returns the stream's last sequence. ``interval`` is the longest pause between two
    sweeps; :meth:`notify` (a report arrived) starts one sooner. ``poll`` is the pause while the
    projection has not yet applied a notified sequence. ``id_key`` is the deployment's secret id
    key (see :func:`hide_event_id`).
    """

    def __init__(
        self,
        candidates: HideCandidates,
        publisher: BatchPublisher,
        head: Callable[[], Awaitable[int]],
        *,
        id_key: bytes,
        interval: float = 1.0,
        poll: float = 0.05,
        max_age: timedelta | None = DEFAULT_MAX_AGE,
        batch: int = 200,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not interval > 0 or not poll > 0 or batch < 1:
            raise InvalidSetting("interval and poll must be positive and batch at least 1")
        self.candidates = candidates
        self.publisher = publisher
        self.id_key = id_key
        self.head = head
        self.interval = interval
        self.poll = poll
        self.max_age = max_age
        self.batch = batch
        self.clock = clock
        self.fence: int | None = None
        self.stats = ReactorStats()
        self.last: Sweep | None = None
        self._wanted = 0
        self._wake = asyncio.Event()

    async def start(self) -> int:
        """Set the starting fence: the stream's last sequence now. Returns it."""
        head = await self.head()
        self.fence = head if self.fence is None else max(self.fence, head)
        _log.info("auto-hide reactor fenced", fence=self.fence)
        return self.fence

    def notify(self, seq: int) -> None:
        """A report was stored at ``seq``: sweep once the projection has applied it."""
        if seq > self._wanted:
            self._wanted = seq
        self._wake.set()

    async def sweep(self) -> Sweep:
        """Look once: if the active generation is past the fence, hide every candidate."""
        if self.fence is None:
            await self.start()
        assert self.fence is not None
        self.stats.sweeps += 1
        applied = await self.candidates.applied_seq()
        if applied is None:
            return self._done(Sweep(SweepState.NO_GENERATION, None, self.fence))
        if applied < self.fence:
            return self._done(Sweep(SweepState.WAITING, applied, self.fence))
        since = None if self.max_age is None else self.clock() - self.max_age
        found = await self.candidates.pending(since, self.batch)
        if not found:
            return self._done(Sweep(SweepState.IDLE, applied, self.fence))
        events = [hide_event(c, self.id_key) for c in found]
        self.stats.attempts += len(events)
        results = await self.publisher.publish_many(events)
        stored = duplicates = failed = conflicts = 0
        for candidate, result in zip(found, results, strict=True):
            if result.status is PublishStatus.CONFLICT:
                # Not stored, and re-sending cannot store it while the other message holds the
                # id in the duplicate window; the item stays a candidate and is tried again.
                conflicts += 1
                _log.error(
                    "hide not stored: its id names another message in the stream",
                    community=candidate.community,
                    target=f"{candidate.target_kind}:{candidate.target}",
                    event_id=str(result.event_id),
                    stored_seq=result.seq,
                )
            elif result.ok and result.seq is not None:
                self.fence = max(self.fence, result.seq)
                if result.status is PublishStatus.DUPLICATE:
                    duplicates += 1
                else:
                    stored += 1
                _log.info(
                    "content hidden",
                    community=candidate.community,
                    target=f"{candidate.target_kind}:{candidate.target}",
                    crossed_seq=candidate.crossed_seq,
                    seq=result.seq,
                    status=str(result.status),
                )
            else:
                failed += 1
                _log.warning(
                    "hide not confirmed; will retry with the same id",
                    community=candidate.community,
                    target=f"{candidate.target_kind}:{candidate.target}",
                    error=result.error,
                )
        if failed:
            # A failed publish may still have been stored, at a sequence we do not know.
            self.fence = max(self.fence, await self.head())
        self.stats.stored += stored
        self.stats.duplicates += duplicates
        self.stats.failed += failed
        self.stats.conflicts += conflicts
        return self._done(
            Sweep(SweepState.PUBLISHED, applied, self.fence, stored, duplicates, failed, conflicts)
        )

    def _done(self, sweep: Sweep) -> Sweep:
        self.last = sweep
        return sweep

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop`` is set: every ``interval``, sooner after :meth:`notify`.

        A sweep that fails (database or stream unreachable) is logged and retried at the next
        tick; the reactor never gives up while it runs.
        """
        backoff = self.interval
        while not stop.is_set():
            try:
                if self.fence is None:
                    await self.start()
                self._wake.clear()
                sweep = await self.sweep()
                backoff = self.interval
            except Exception as error:
                _log.warning("auto-hide sweep failed", error=str(error) or type(error).__name__)
                await _wait(stop, None, backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            behind = sweep.applied is not None and sweep.applied < max(self._wanted, sweep.fence)
            await _wait(
                stop, None if behind else self._wake, self.poll if behind else self.interval
            )


async def _wait(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, or ``timeout`` seconds passed."""
    waiters: Sequence[asyncio.Task[bool]] = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters = [*waiters, asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
