"""Live freshness: from publish to visible in the projection table, at a steady rate.

    python -m bench.freshness [--rate 5000] [--seconds 60] [--db sqlite|postgres]

A worker process runs the reference projection (EventCounts) live from the head of the stream
and records, for every committed batch, its last sequence and the commit time. A publisher
process sends events at a steady rate (a chunk every 10 ms, with Publisher.publish_many) and
records, for every event, the time just before it was sent and the sequence its PubAck gave.
An event is visible when the first batch that covers its sequence has committed. Both processes
read the same clock (time.time on one machine). Target (issue "Projection engine"): p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_PG, machine, postgres_database, stamp


async def worker_phase(nats_url: str, db: str, total: int) -> dict[str, Any]:
    """Run the worker live until ``total`` events are applied; return (seq, commit time) pairs."""
    import nats
    import structlog

    from projections.counts import EventCounts
    from projections.database import create_engine
    from projections.runner import Worker
    from projections.store import ProjectionStore

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    store = ProjectionStore(create_engine(db), EventCounts())
    store.ensure(1)
    commits: list[tuple[int, float]] = []
    worker = Worker(
        js, store, generation=1, on_batch=lambda p: commits.append((p.applied_seq, time.time()))
    )
    print("ready", flush=True)
    await worker.run(until_seq=total)
    await nc.close()
    return {"commits": commits, "batches": worker.progress.batches}


async def publisher_phase(nats_url: str, rate: int, seconds: float) -> dict[str, Any]:
    """Publish at ``rate`` events/s for ``seconds``; return (seq, send time) pairs."""
    import nats
    import structlog

    from bench.synthetic import history
    from events.publisher import Publisher

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    nc = await nats.connect(nats_url)
    publisher = Publisher(nc)
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    events = history(int(rate * seconds) + per_tick, seed=7)
    sent: list[tuple[int, float]] = []
    pending: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    ticks = int(seconds / tick)

    async def send(chunk: list[Any], at: float) -> None:
        for result in await publisher.publish_many(chunk):
            if result.seq is not None:
                sent.append((result.seq, at))

    for i in range(ticks):
        due = start + i * tick
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = [next(events) for _ in range(per_tick)]
        task = asyncio.create_task(send(chunk, time.time()))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    elapsed = time.monotonic() - start
    await nc.close()
    return {"sent": sent, "seconds": elapsed}


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[round(q * 1000) - 1] if len(values) > 1 else 0.0


def main() -> None:
    """Run the two processes against one embedded server and print the latency figures."""
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        result = asyncio.run(worker_phase(sys.argv[2], sys.argv[3], int(sys.argv[5])))
        Path(sys.argv[4]).write_text(json.dumps(result))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "publisher":
        result = asyncio.run(publisher_phase(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
        Path(sys.argv[5]).write_text(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default=DEFAULT_PG)
    args = parser.parse_args()

    import asyncio as _asyncio

    import nats

    from agora.embedded import EmbeddedNats
    from agora.stream import StreamSettings, ensure_stream

    total = round(args.rate * 0.01) * int(args.seconds / 0.01)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:

        async def init() -> None:
            nc = await nats.connect(server.url)
            await ensure_stream(nc.jetstream(), StreamSettings())
            await nc.close()

        _asyncio.run(init())
        if args.db == "sqlite":
            result = _run(server.url, f"sqlite:///{tmp}/fresh.db", tmp, args, total)
        else:
            with postgres_database(args.postgres) as url:
                result = _run(server.url, url, tmp, args, total)
    print(f"machine: {machine()}")
    print(f"when:    {stamp()}")
    for line in result:
        print(line)


def _run(nats_url: str, db: str, tmp: str, args: argparse.Namespace, total: int) -> list[str]:
    worker_out, publisher_out = Path(tmp) / "worker.json", Path(tmp) / "publisher.json"
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.freshness", "worker", nats_url, db, str(worker_out),
         str(total)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert worker.stdout is not None
    if worker.stdout.readline().strip() != "ready":
        raise RuntimeError("worker did not start")
    subprocess.run(
        [sys.executable, "-m", "bench.freshness", "publisher", nats_url, str(args.rate),
         str(args.seconds), str(publisher_out)],
        check=True,
    )  # fmt: skip
    if worker.wait(timeout=600) != 0:
        raise RuntimeError("worker failed")
    commits = json.loads(worker_out.read_text())
    sent = json.loads(publisher_out.read_text())
    commit_seqs = [c[0] for c in commits["commits"]]
    commit_times = [c[1] for c in commits["commits"]]
    latencies = []
    for seq, at in sent["sent"]:
        i = bisect.bisect_left(commit_seqs, seq)
        latencies.append((commit_times[i] - at) * 1000)
    achieved = len(sent["sent"]) / sent["seconds"]
    return [
        f"database: {args.db}; target rate {args.rate}/s for {args.seconds:.0f} s, "
        f"achieved {achieved:,.0f}/s ({len(latencies):,} events, {commits['batches']:,} batches)",
        f"publish -> visible: p50 {_percentile(latencies, 0.5):.1f} ms, "
        f"p99 {_percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms "
        "[target p99 <= 100 ms]",
    ]


if __name__ == "__main__":
    main()
