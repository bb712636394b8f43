"""Replay throughput of the projection engine against two baselines measured in the same run.

    python -m bench.replay [--events 1000000] [--naive-events 20000] [--db sqlite,postgres]
                           [--projections event_counts,reputation,moderation,engagement]
                           [--partitions N]

(a) raw nats-py ordered push consumer + decode of the same stream: the ceiling of reading;
(b) a naive FastStream subscriber committing one transaction per event: what most first
    projections look like;
then the engine (a Worker running each chosen projection, the reference EventCounts by default)
on SQLite and PostgreSQL, with peak RSS and RSS samples along the way (it should stay flat).
Targets (issue "Projection engine"): engine >= 50 % of (a), >= 50x (b).
Each phase runs in its own process, so RSS figures are its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_PG,
    machine,
    peak_rss_mb,
    postgres_database,
    rss_mb,
    run_phase,
    stamp,
)


async def _connect(url: str):  # type: ignore[no-untyped-def]
    import nats

    return await nats.connect(url, max_reconnect_attempts=-1)


async def fill(url: str, count: int) -> dict[str, float]:
    """Publish the synthetic history until the stream holds ``count`` events."""
    from agora.stream import StreamSettings, ensure_stream
    from bench.synthetic import history
    from events import encode
    from events.subjects import subject_of

    nc = await _connect(url)
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings())
    have = (await js.stream_info("AGORA")).state.messages
    started = time.monotonic()
    if have < count:
        for i, event in enumerate(history(count)):
            if i < have:
                continue
            await js.publish_async(
                subject_of(event), encode(event), headers={"Nats-Msg-Id": str(event.id)}
            )
        await js.publish_async_completed()
    state = (await js.stream_info("AGORA")).state
    await nc.close()
    return {"messages": state.messages, "bytes": state.bytes, "seconds": time.monotonic() - started}


async def raw(url: str, count: int) -> dict[str, float]:
    """Baseline (a): ordered push consumer with decoding, nothing else."""
    from nats.js.api import DeliverPolicy

    from events.codec import CODEC

    nc = await _connect(url)
    js = nc.jetstream()
    done = asyncio.Event()
    seen = 0
    decode = CODEC.decode

    async def on_message(msg) -> None:  # type: ignore[no-untyped-def]
        nonlocal seen
        decode(msg.data)
        seen += 1
        if seen >= count:
            done.set()

    started = time.monotonic()
    sub = await js.subscribe(
        "agora.>",
        cb=on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        pending_msgs_limit=200_000,
        pending_bytes_limit=256 * 2**20,
    )
    await done.wait()
    elapsed = time.monotonic() - started
    await sub.unsubscribe()
    await nc.close()
    return {
        "events": seen,
        "seconds": elapsed,
        "rate": seen / elapsed,
        "peak_rss_mb": peak_rss_mb(),
    }


async def naive(url: str, db: str, count: int) -> dict[str, float]:
    """Baseline (b): FastStream subscriber, one SQL transaction per event."""
    import sqlalchemy as sa
    from faststream import AckPolicy
    from faststream.nats import DeliverPolicy, JStream, NatsBroker
    from faststream.nats.annotations import NatsMessage

    from events.codec import CODEC
    from projections.counts import EventCounts
    from projections.database import create_engine

    engine = create_engine(db)
    metadata = sa.MetaData()
    table = EventCounts().define_tables(metadata, lambda name: f"naive_{name}")["event_counts"]
    metadata.create_all(engine)
    dialect = engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["community", "type", "day"],
        set_={"events": table.c.events + stmt.excluded.events},
    )
    broker = NatsBroker(url)
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(
        "agora.>",
        stream=JStream("AGORA", declare=False),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.ACK,
    )
    async def handle(msg: NatsMessage) -> None:
        nonlocal seen
        event = CODEC.decode(msg.body)
        with engine.begin() as conn:
            conn.execute(
                stmt,
                {
                    "community": event.community,
                    "type": event.TYPE,
                    "day": event.occurred_at.date(),
                    "events": 1,
                },
            )
        seen += 1
        if seen >= count:
            done.set()

    started = time.monotonic()
    await broker.start()
    await done.wait()
    elapsed = time.monotonic() - started
    await broker.stop()
    return {"events": seen, "seconds": elapsed, "rate": seen / elapsed}


async def engine_phase(
    url: str, db: str, count: int, projection: str, partition: int = 0, partitions: int = 1
) -> dict[str, object]:
    """The engine: a Worker running ``projection`` from the start of the stream to ``count``.

    With ``partitions`` > 1 this process runs one partition (the tables exist already).
    """
    import structlog

    from agora.registry import get_projection
    from projections.database import create_engine
    from projections.runner import Worker
    from projections.store import ProjectionStore

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    nc = await _connect(url)
    js = nc.jetstream()
    store = ProjectionStore(create_engine(db), get_projection(projection))
    if partitions == 1:
        store.ensure(1)
    samples: list[tuple[int, float]] = []
    marks = iter([count // 4, count // 2, 3 * count // 4])
    next_mark = next(marks)

    def on_batch(progress) -> None:  # type: ignore[no-untyped-def]
        nonlocal next_mark
        if next_mark and progress.applied_seq >= next_mark:
            samples.append((progress.applied_seq, round(rss_mb(), 1)))
            next_mark = next(marks, 0)

    worker = Worker(
        js, store, generation=1, partition=partition, partitions=partitions, on_batch=on_batch
    )
    started, wall_started = time.monotonic(), time.time()
    await worker.run(until_seq=count)
    elapsed = time.monotonic() - started
    samples.append((worker.progress.applied_seq, round(rss_mb(), 1)))
    await nc.close()
    return {
        "events": worker.progress.applied_seq,
        "seconds": elapsed,
        "rate": worker.progress.applied_seq / elapsed,
        "batches": worker.progress.batches,
        "peak_rss_mb": peak_rss_mb(),
        "rss_samples": samples,
        "wall": [wall_started, time.time()],
    }


def partitioned(url: str, db: str, count: int, projection: str, partitions: int) -> dict[str, Any]:
    """The engine with ``partitions`` worker processes, one partition each, started together.

    The rate is the stream's events over the span from the first start to the last finish.
    """
    from agora.registry import get_projection
    from projections.database import create_engine
    from projections.store import ProjectionStore

    engine = create_engine(db)
    ProjectionStore(engine, get_projection(projection)).ensure(1, partitions=partitions)
    engine.dispose()
    args = ["phase", "engine", "--nats", url, "--db", db, "--events", str(count)]
    args += ["--projection", projection, "--partitions", str(partitions)]
    with ThreadPoolExecutor(partitions) as pool:
        parts = list(
            pool.map(
                lambda i: json.loads(run_phase("bench.replay", *args, "--partition", str(i))),
                range(partitions),
            )
        )
    span = max(p["wall"][1] for p in parts) - min(p["wall"][0] for p in parts)
    return {
        "events": count,
        "seconds": span,
        "rate": count / span,
        "batches": sum(p["batches"] for p in parts),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
        "rss_samples": [p["rss_samples"][-1] for p in parts],
    }


def _phase(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=["fill", "raw", "naive", "engine"])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--db", default="")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--projection", default="event_counts")
    parser.add_argument("--partition", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args(argv)
    if args.name == "fill":
        result: object = asyncio.run(fill(args.nats, args.events))
    elif args.name == "raw":
        result = asyncio.run(raw(args.nats, args.events))
    elif args.name == "naive":
        result = asyncio.run(naive(args.nats, args.db, args.events))
    else:
        result = asyncio.run(
            engine_phase(
                args.nats, args.db, args.events, args.projection, args.partition, args.partitions
            )
        )
    print(json.dumps(result))


def main() -> None:
    """Run every phase and print the table of rates and ratios."""
    if len(sys.argv) > 1 and sys.argv[1] == "phase":
        _phase(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--naive-events", type=int, default=20_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument(
        "--projections", default="event_counts", help="comma-separated registered projections"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="run each projection as this many partitions, one worker process each",
    )
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument(
        "--store", default=".agora/bench", help="where the stream is kept between runs"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from agora.embedded import EmbeddedNats

    store_dir = Path(args.store) / f"nats-{args.events}"
    results: dict[str, Any] = {"machine": machine(), "when": stamp(), "events": args.events}
    with EmbeddedNats(store_dir) as server, tempfile.TemporaryDirectory() as tmp:
        url = server.url
        results["fill"] = json.loads(
            run_phase("bench.replay", "phase", "fill", "--nats", url, "--events", str(args.events))
        )
        results["raw"] = json.loads(
            run_phase("bench.replay", "phase", "raw", "--nats", url, "--events", str(args.events))
        )
        dbs = args.db.split(",")
        projections = args.projections.split(",")
        for db in dbs:
            runs = [("naive", "naive", args.naive_events, [])]
            runs += [
                (f"engine_{p}", "engine", args.events, ["--projection", p]) for p in projections
            ]
            for key, phase, n, extra in runs:
                with _database(db, tmp, args.postgres) as db_url:
                    if phase == "engine" and args.partitions > 1:
                        results[f"{key}_{db}"] = partitioned(
                            url, db_url, n, extra[1], args.partitions
                        )
                        continue
                    results[f"{key}_{db}"] = json.loads(
                        run_phase(
                            "bench.replay",
                            "phase",
                            phase,
                            "--nats",
                            url,
                            "--db",
                            db_url,
                            "--events",
                            str(n),
                            *extra,
                        )
                    )
    _report(results, dbs, projections, args.partitions)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


@contextlib.contextmanager
def _database(kind: str, tmp: str, postgres: str) -> Iterator[str]:
    """A fresh database of ``kind`` for one phase: a SQLite file, or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/{time.monotonic_ns()}.db"
    else:
        with postgres_database(postgres) as url:
            yield url


def _report(
    results: dict[str, Any], dbs: list[str], projections: list[str], partitions: int = 1
) -> None:
    raw = results["raw"]
    print(f"machine: {results['machine']}")
    print(f"when:    {results['when']}")
    print(f"stream:  {results['events']:,} events")
    print(
        f"(a) raw ordered consumer + decode: {raw['rate']:,.0f} events/s, "
        f"peak RSS {raw['peak_rss_mb']:.0f} MiB"
    )
    for db in dbs:
        naive_rate = results[f"naive_{db}"]["rate"]
        print(f"[{db}] (b) naive FastStream, 1 tx/event: {naive_rate:,.0f} events/s")
        for projection in projections:
            eng = results[f"engine_{projection}_{db}"]
            parts = f" x{partitions} partitions" if partitions > 1 else ""
            print(
                f"[{db}] engine {projection}{parts}: {eng['rate']:,.0f} events/s "
                f"in {eng['batches']} batches; "
                f"{eng['rate'] / raw['rate']:.0%} of (a) [target >= 50%], "
                f"{eng['rate'] / naive_rate:.0f}x (b) [target >= 50x]; "
                f"peak RSS {eng['peak_rss_mb']:.0f} MiB; RSS (seq, MiB): {eng['rss_samples']}"
            )


if __name__ == "__main__":
    main()
