"""The events/s a worker reports in its status row: over a recent window, not since it started.

A real worker on a real nats-server and SQLite; only the worker's monotonic clock is driven by the
test, so a minute of trickle takes a few seconds. Every wait is a bounded poll of a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from support.engine import make_events, publish, wait_until, wires

from projections.counts import EventCounts
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.status import read_status, wait_for
from projections.store import ProjectionStore

NAME = "event_counts"


class Clock:
    """A monotonic clock the test moves forward."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_the_rate_reflects_a_trickle_once_an_import_burst_has_left_the_window(
    nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    """Failed before: the rate was events since start / uptime: 43.9/s here for a 1/s trickle."""
    engine = create_engine(f"sqlite:///{tmp_path / 'rate.db'}")
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    store.activate(1)
    clock = Clock()
    settings = WorkerSettings(status_interval=0.05, idle_heartbeat=0.5, stall_timeout=2.0)
    worker = Worker(js, store, generation=1, settings=settings, clock=clock)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        # An import: 3,000 events at once.
        burst = await publish(js, wires(make_events(3000, seed=1, tag="burst")))
        await wait_for(engine, NAME, burst[-1], 60)
        # Then one event per second for 70 s: the burst leaves the 60 s window after 60 s.
        for i in range(70):
            clock.now += 1.0
            [seq] = await publish(js, wires(make_events(1, seed=i, tag="trickle")))
            await wait_for(engine, NAME, seq, 30)
        written_after = datetime.now(UTC)

        def reported() -> float | None:
            [row] = read_status(engine, NAME)
            updated = row.updated_at
            return row.rate if updated is not None and updated > written_after else None

        await wait_until(lambda: reported() is not None, 30, "a status row after the trickle")
        rate = reported()
        assert rate is not None and 0.5 <= rate <= 2.0, rate
        assert 0.5 <= worker.progress.rate() <= 2.0
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 30)
        engine.dispose()
