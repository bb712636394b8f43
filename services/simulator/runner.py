"""Publishing simulated traffic at a configured rate, paced by the monotonic clock.

Every ``tick`` the runner works out how many events are due since it started (the rate times the
elapsed time, times the daily cycle of the moment when it is on), generates them with the event
time *now*, and hands them to :meth:`events.publisher.Publisher.publish_many` in batches. Up to
``max_in_flight_batches`` batches await their acks concurrently, so ack latency does not cap the
rate; when that many are outstanding the runner waits, and the schedule's debt is bounded to
``max_burst`` seconds of events, so a stall is followed by a short catch-up, not a flood.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import structlog

from events.catalogue import Event
from events.publisher import PublishResult, PublishStatus
from services.errors import InvalidSetting
from services.simulator.model import Simulator, daily_factor

_log = structlog.get_logger("services.simulator")


class BatchPublisher(Protocol):
    """What the runner needs of :class:`events.publisher.Publisher`."""

    async def publish_many(self, events: Iterable[Event]) -> list[PublishResult]:
        """Publish events; one result per event, in order."""
        ...


@dataclass(slots=True)
class RunStats:
    """What a run did; latencies are per batch (publish_many call to its last ack), seconds."""

    generated: int = 0
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    seconds: float = 0.0
    target: float = 0.0
    """Events the schedule asked for over the run."""
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Events acknowledged (stored or duplicate) per second over the run."""
        return (self.stored + self.duplicates) / self.seconds if self.seconds else 0.0


class Runner:
    """Publishes a :class:`Simulator`'s events at ``rate`` events/s until stopped."""

    def __init__(
        self,
        simulator: Simulator,
        publisher: BatchPublisher,
        rate: float,
        *,
        tick: float = 0.01,
        batch: int = 500,
        max_in_flight_batches: int = 8,
        max_burst: float = 1.0,
        follow_cycle: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not rate > 0 or not tick > 0 or batch < 1 or max_in_flight_batches < 1:
            raise InvalidSetting("rate and tick must be positive, batch sizes at least 1")
        self.simulator = simulator
        self.publisher = publisher
        self.rate = rate
        self.tick = tick
        self.batch = batch
        self.max_in_flight_batches = max_in_flight_batches
        self.max_burst = max_burst
        self.follow_cycle = follow_cycle and simulator.config.daily_amplitude > 0
        self.clock = clock
        self.stats = RunStats()

    def current_rate(self, at: datetime) -> float:
        """The rate the schedule follows at ``at`` (the daily cycle applied when enabled)."""
        if not self.follow_cycle:
            return self.rate
        return self.rate * daily_factor(at, self.simulator.config.daily_amplitude)

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> RunStats:
        """Publish until ``stop`` is set or ``duration`` seconds have passed; return the stats."""
        stats = self.stats
        pending: set[asyncio.Task[None]] = set()
        started = last = time.monotonic()
        due = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                if duration is not None and now - started >= duration:
                    break
                rate = self.current_rate(self.clock())
                due = min(due + (now - last) * rate, rate * self.max_burst)
                stats.target += (now - last) * rate
                last = now
                while due >= 1 and len(pending) < self.max_in_flight_batches:
                    size = min(int(due), self.batch)
                    due -= size
                    at = self.clock()
                    events: list[Event] = [self.simulator.next_event(at) for _ in range(size)]
                    stats.generated += size
                    task = asyncio.create_task(self._send(events))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                if len(pending) >= self.max_in_flight_batches:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(self.tick)
            if pending:
                await asyncio.gather(*pending)
        finally:
            for task in pending:
                task.cancel()
            stats.seconds = time.monotonic() - started
        return stats

    async def _send(self, events: list[Event]) -> None:
        sent = time.monotonic()
        results = await self.publisher.publish_many(events)
        stats = self.stats
        stats.latencies.append(time.monotonic() - sent)
        for result in results:
            if result.status is PublishStatus.STORED:
                stats.stored += 1
            elif result.status is PublishStatus.DUPLICATE:
                stats.duplicates += 1
            else:
                stats.failed += 1
        failures = [r.error for r in results if r.status is PublishStatus.FAILED]
        if failures:
            _log.warning("simulated events not stored", events=len(failures), error=failures[0])
