"""One projection worker in its own process, for the fault tests that SIGKILL it.

    python tests/integration/worker_proc.py --nats URL --db URL --until N [--partition P]

It runs ``Worker(...).run(until_seq=N)`` for EventCounts on generation 1 (which the test has
created) and exits 0 once the checkpoint is at N. With ``--poison ACTOR`` the fold raises on
that actor's events (a bug: the default policy parks their communities). With
``--all-partitions`` it runs a worker for every partition, as ``agora worker`` does; ``--lease``
sets the writer lease in seconds. At the end it prints ``applied N``: the events its workers
applied.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from collections.abc import Sequence

import nats
import structlog

from projections.api import Delivered
from projections.changes import Changes
from projections.counts import EventCounts
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.store import ProjectionStore


class Poisoned(EventCounts):
    """EventCounts whose fold raises on the events of one actor."""

    def __init__(self, actor: str) -> None:
        self.actor = actor

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            if delivered.event.actor == self.actor:
                raise RuntimeError(f"cannot fold the event at seq {delivered.seq}")
        super().fold(batch, changes)


async def main(args: argparse.Namespace) -> int:
    nc = await nats.connect(
        args.nats, max_reconnect_attempts=-1, reconnect_time_wait=0.1, connect_timeout=2
    )
    engine = create_engine(args.db)
    store = ProjectionStore(engine, Poisoned(args.poison) if args.poison else EventCounts())
    settings = WorkerSettings(
        max_events=args.batch,
        catchup_max_events=args.batch,
        status_interval=0.1,
        lock_poll=0.1,
        db_retry=0.2,
        stall_timeout=2.0,
        idle_heartbeat=0.5,
    )
    if args.lease is not None:
        settings = dataclasses.replace(settings, lease=args.lease)
    mine = range(args.partitions) if args.all_partitions else [args.partition]
    workers = [
        Worker(
            nc.jetstream(),
            store,
            generation=args.generation,
            partition=p,
            partitions=args.partitions,
            settings=settings,
        )
        for p in mine
    ]
    try:
        await asyncio.gather(*(w.run(until_seq=args.until) for w in workers))
    finally:
        await nc.close()
        engine.dispose()
    print(f"applied {sum(w.progress.events for w in workers)}", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--until", type=int, required=True)
    parser.add_argument("--generation", type=int, default=1)
    parser.add_argument("--partition", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--poison", default=None)
    parser.add_argument("--all-partitions", action="store_true")
    parser.add_argument("--lease", type=float, default=None)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    raise SystemExit(asyncio.run(main(parser.parse_args())))
