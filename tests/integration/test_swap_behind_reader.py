"""A swap waits for an open reader of the stable name without stalling the live worker.

On PostgreSQL, replacing a stable view needs an exclusive lock on it, which an open read
transaction (a dashboard client in REPEATABLE READ) holds off. The swap waits at most its lock
timeout per attempt and retries with backoff; meanwhile the active generation's worker goes on
applying and new readers get through. On SQLite (WAL) an open reader does not hold off a swap
at all: the swap commits and the reader keeps its snapshot.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from support.engine import (
    checkpoint_row,
    counts,
    database_url,
    make_events,
    oracle,
    publish,
    wait_until,
    wires,
)

from projections import lifecycle
from projections.counts import EventCounts
from projections.database import create_engine, reader
from projections.lifecycle import bootstrap, start_generation
from projections.runner import Worker, WorkerSettings
from projections.store import ProjectionStore

FAST = WorkerSettings(
    stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, lock_poll=0.1, db_retry=0.2
)


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    kind = "postgres" if request.node.get_closest_marker("postgres") else "sqlite"
    engine = create_engine(database_url(kind, tmp_path, request))
    yield engine
    engine.dispose()


def _swap_waits_for_lock(engine: sa.Engine) -> bool:
    """Whether a session waits for a lock in a DROP VIEW (the swap blocked by the reader)."""
    with engine.connect() as conn:
        waiting = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE 'DROP VIEW%'"
            )
        ).scalar()
    return bool(waiting)


def _read_total(engine: sa.Engine, done: threading.Event) -> None:
    with reader(engine).connect() as conn:
        conn.execute(sa.text("SELECT coalesce(sum(events), 0) FROM event_counts")).scalar()
    done.set()


@pytest.mark.postgres
async def test_a_swap_behind_an_open_reader_never_stalls_the_live_worker(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    first = await publish(js, wires(make_events(300, seed=61)))
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    stop = asyncio.Event()
    live = asyncio.create_task(Worker(js, store, generation=1, settings=FAST).run(stop))
    await wait_until(lambda: store.checkpoint(1) == first[-1], 60, "g1 caught up")
    assert start_generation(store, 1) == 2

    # A dashboard client: a REPEATABLE READ transaction that read the stable name, left open.
    dashboard = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    threads: list[threading.Thread] = []
    try:
        dashboard.execute(sa.text("SELECT count(*) FROM event_counts")).scalar()
        build = asyncio.create_task(
            lifecycle.build(js, store, 2, settings=FAST, stop=stop, poll=0.05)
        )
        await wait_until(
            lambda: _swap_waits_for_lock(engine), 60, "the swap waiting behind the reader"
        )

        # While the swap is held off, the live worker goes on applying new events...
        more = await publish(js, wires(make_events(200, seed=62, tag="more")))
        await wait_until(
            lambda: store.checkpoint(1) == more[-1],
            30,
            "the live worker of g1 applying while the swap waits",
            detail=lambda: f"g1 at {store.checkpoint(1)}, head {more[-1]}",
        )
        # ...and a new reader of the stable name is not starved by the waiting swap.
        done = threading.Event()
        threads.append(threading.Thread(target=_read_total, args=(engine, done), daemon=True))
        threads[-1].start()
        await wait_until(done.is_set, 30, "a new read of the stable name while the swap waits")
        assert not build.done(), "the swap completed although the reader is still open"
    finally:
        dashboard.rollback()
        dashboard.close()
        for thread in threads:
            await asyncio.to_thread(thread.join, 30)

    try:
        assert (await asyncio.wait_for(build, 60)).swapped
        assert store.active() == 2
        await wait_until(lambda: store.checkpoint(2) == more[-1], 60, "g2 at the head")
        events = make_events(300, seed=61) + make_events(200, seed=62, tag="more")
        expected = oracle(zip(first + more, events, strict=True))
        assert counts(engine, "event_counts") == expected
        assert counts(engine, "event_counts__g1") == expected
        assert checkpoint_row(engine, "event_counts", 1).duplicates == 0
    finally:
        stop.set()
        await asyncio.wait_for(live, 30)


async def test_on_sqlite_an_open_reader_does_not_hold_off_a_swap(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    seqs = await publish(js, wires(make_events(200, seed=63)))
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    await asyncio.wait_for(
        Worker(js, store, generation=1, settings=FAST).run(until_seq=seqs[-1]), 60
    )
    assert start_generation(store, 1) == 2
    await asyncio.wait_for(
        Worker(js, store, generation=2, settings=FAST).run(until_seq=seqs[-1]), 60
    )
    with reader(engine).connect() as dashboard:
        before = dashboard.execute(sa.text("SELECT sum(events) FROM event_counts")).scalar()
        store.activate(2, only_building=True)  # WAL: commits while the reader is open
        assert store.active() == 2
        # The open reader keeps its snapshot: the same total, read through the old definition.
        assert dashboard.execute(sa.text("SELECT sum(events) FROM event_counts")).scalar() == before
    expected = oracle(zip(seqs, make_events(200, seed=63), strict=True))
    assert counts(engine, "event_counts") == expected
