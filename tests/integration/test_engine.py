"""The projection engine end to end: a real embedded nats-server, real SQLite and PostgreSQL.

Each test proves one claim of the engine: the worker stops where it is told and resumes at its
checkpoint; a re-published event id is counted once; undecodable messages become dead letters and
nothing is lost; a fold error pauses or parks as configured, and parked events are retried after
a fix; partitions by community add up to the single-partition result; a nats-server crash and
restart under a running worker ends with exact counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.js import JetStreamContext
from support.engine import (
    DB_KINDS,
    Wire,
    checkpoint_row,
    counts,
    database_url,
    make_events,
    oracle,
    publish,
    wait_until,
    wires,
)

from agora.embedded import EmbeddedNats
from events import Event
from events.publisher import Publisher, PublishStatus
from projections import runner as runner_module
from projections.api import Delivered
from projections.changes import Changes
from projections.counts import EventCounts
from projections.database import create_engine
from projections.partitions import community_of_subject, partition_of
from projections.runner import Worker, WorkerSettings, WorkerState
from projections.status import read_status
from projections.store import FoldPolicy, ProjectionStore, RawMessage

FAST = WorkerSettings(
    stall_timeout=2.0,
    idle_heartbeat=0.5,
    status_interval=0.2,
    lock_poll=0.1,
    db_retry=0.2,
)
"""Worker settings for tests: quick watchdog, status and retries."""

POISON = "poison"


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, tmp_path, request)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


class Flaky(EventCounts):
    """EventCounts whose fold raises on events of the actor ``poison`` until it is fixed."""

    def __init__(self) -> None:
        self.broken = True

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            if self.broken and delivered.event.actor == POISON:
                raise RuntimeError(f"cannot fold the event at seq {delivered.seq}")
        super().fold(batch, changes)


def poisoned(event: Event) -> Event:
    return msgspec.structs.replace(event, actor=POISON)


async def run_until(worker: Worker, seq: int, timeout: float = 90) -> None:
    await asyncio.wait_for(worker.run(until_seq=seq), timeout)


@pytest.fixture
async def running() -> AsyncIterator[list[tuple[asyncio.Event, asyncio.Task[None]]]]:
    """Workers started in the background by a test; stopped (and awaited) at its end."""
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    yield started
    for stop, _ in started:
        stop.set()
    for _, task in started:
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)


def start(
    running: list[tuple[asyncio.Event, asyncio.Task[None]]], worker: Worker
) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    running.append((stop, task))
    return stop, task


# -- stopping, resuming ---------------------------------------------------------------------


async def test_worker_stops_at_until_seq_and_resumes_at_the_checkpoint(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    events = make_events(3000, seed=1)
    seqs = await publish(js, wires(events))
    assert seqs == list(range(1, 3001))
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)

    first = Worker(js, store, generation=1, settings=FAST)
    await run_until(first, 1200)
    assert store.checkpoint(1) == 1200, "the worker must stop exactly at until_seq"
    assert counts(engine) == oracle(zip(seqs[:1200], events[:1200], strict=True))

    # A restart is a new worker: it reads the checkpoint and asks the stream for 1201 on.
    second = Worker(js, store, generation=1, settings=FAST)
    await run_until(second, 3000)
    assert second.progress.events == 1800, "the restarted worker re-read applied messages"
    assert counts(engine) == oracle(zip(seqs, events, strict=True))
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (3000, 3000, 0, 0)

    # Nothing new: a third worker has nothing to do and changes nothing.
    third = Worker(js, store, generation=1, settings=FAST)
    await run_until(third, 3000)
    assert third.progress.events == 0
    assert counts(engine) == oracle(zip(seqs, events, strict=True))


# -- duplicates -----------------------------------------------------------------------------


async def test_an_event_id_republished_after_the_dedupe_window_is_counted_once(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    events = make_events(200, seed=2)
    seqs = await publish(js, wires(events))
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    await run_until(Worker(js, store, generation=1, settings=FAST), 200)

    # Once the server's duplicate window has passed it stores a re-published event again: the
    # same payload under another Nats-Msg-Id is exactly that. Some copies repeat earlier batches'
    # events, some repeat each other within one batch.
    again = [Wire(w.subject, w.data, str(uuid.uuid4())) for w in wires(events[:30])]
    again += [Wire(w.subject, w.data, str(uuid.uuid4())) for w in wires(events[100:101]) * 3]
    copies = await publish(js, again)
    await run_until(Worker(js, store, generation=1, settings=FAST), copies[-1])

    assert counts(engine) == oracle(zip(seqs, events, strict=True))
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (233, 233, 33, 0)


# -- invalid messages -----------------------------------------------------------------------


def invalid_messages(n: int, rng: random.Random) -> list[tuple[Wire, str]]:
    """``n`` undecodable messages of four kinds, each with the error class it must get."""
    template = json.loads(wires(make_events(1, seed=99))[0].data)
    out: list[tuple[Wire, str]] = []
    for i in range(n):
        kind = i % 4
        body = dict(template, id=str(uuid.uuid4()))
        if kind == 0:
            data, reason = b"\x00not json " + str(i).encode(), "InvalidEvent"
        elif kind == 1:
            data, reason = (
                json.dumps(dict(body, type=f"no.such.type{i}")).encode(),
                "UnknownEventType",
            )
        elif kind == 2:
            data, reason = json.dumps(dict(body, community="not a token!")).encode(), "InvalidEvent"
        else:
            data, reason = json.dumps(dict(body, v=99)).encode(), "UnsupportedVersion"
        out.append((Wire(f"agora.c{rng.randrange(8)}.junk", data, str(uuid.uuid4())), reason))
    return out


async def test_invalid_messages_become_dead_letters_and_none_is_lost(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    rng = random.Random(3)
    events = make_events(50_000, seed=3)
    stream: list[tuple[Wire, Event | str]] = [
        (w, e) for w, e in zip(wires(events), events, strict=True)
    ]
    for wire, reason in invalid_messages(1_000, rng):
        stream.insert(rng.randrange(len(stream) + 1), (wire, reason))
    seqs = await publish(js, [w for w, _ in stream])
    assert seqs == list(range(1, len(stream) + 1))

    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    await run_until(Worker(js, store, generation=1, settings=FAST), seqs[-1], timeout=180)

    valid = [(s, e) for s, (_, e) in zip(seqs, stream, strict=True) if isinstance(e, Event)]
    bad = {s: (w, e) for s, (w, e) in zip(seqs, stream, strict=True) if isinstance(e, str)}
    assert counts(engine) == oracle(valid)

    with engine.connect() as conn:
        letters = conn.execute(
            sa.text(
                "SELECT seq, partition, subject, raw, kind, error_class, error_message "
                "FROM agora_dead_letters"
            )
        ).all()
        applied = {
            int(r[0]) for r in conn.execute(sa.text("SELECT seq FROM agora_seen_event_counts__g1"))
        }
    assert len(letters) == 1_000
    for seq, partition, subject, raw, kind, error_class, message in letters:
        wire, reason = bad[seq]
        assert (partition, subject, bytes(raw), kind) == (0, wire.subject, wire.data, "invalid")
        assert error_class == reason and message
    dead = {int(r[0]) for r in letters}
    assert applied == {s for s, _ in valid}
    assert dead.isdisjoint(applied) and dead | applied == set(seqs), "a message was lost"
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (51_000, 51_000, 0, 1_000)


# -- fold errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_fold_error_pauses_the_partition_before_the_bad_batch(
    js: JetStreamContext,
    engine: sa.Engine,
    running: list[tuple[asyncio.Event, asyncio.Task[None]]],
) -> None:
    events = make_events(200, seed=4)
    events[150] = poisoned(events[150])
    seqs = await publish(js, wires(events[:100]))
    projection = Flaky()
    store = ProjectionStore(engine, projection)
    store.ensure(1)
    pause = dataclasses.replace(FAST, fold_policy=FoldPolicy.PAUSE)  # not the default (hold)
    await run_until(Worker(js, store, generation=1, settings=pause), 100)
    seqs += await publish(js, wires(events[100:]))

    worker = Worker(js, store, generation=1, settings=pause)
    stop, task = start(running, worker)

    def paused() -> bool:
        return read_status(engine, "event_counts")[0].worker_state == "paused"

    await wait_until(paused, 30, "the partition to pause")
    status = read_status(engine, "event_counts")[0]
    assert status.error is not None and "fold failed at seq 151" in status.error
    assert "RuntimeError: cannot fold the event at seq 151" in status.error
    checkpoint = store.checkpoint(1)
    assert 100 <= checkpoint < 151, "the batch holding the bad event must not be applied"
    assert status.checkpoint == checkpoint
    assert counts(engine) == oracle(zip(seqs[:checkpoint], events[:checkpoint], strict=True))
    assert not task.done(), "a paused worker waits to be stopped"
    stop.set()
    await asyncio.wait_for(task, 10)
    after = read_status(engine, "event_counts")[0]
    assert after.worker_state == "paused" and after.error == status.error

    projection.broken = False  # the fix is deployed
    await run_until(Worker(js, store, generation=1, settings=pause), 200)
    assert counts(engine) == oracle(zip(seqs, events, strict=True))
    fixed = read_status(engine, "event_counts")[0]
    assert fixed.worker_state == "stopped" and fixed.error is None


async def test_a_fold_error_parks_the_event_and_retry_applies_it_after_a_fix(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    events = make_events(600, seed=5)
    poison_at = [17, 250, 251, 599]
    for i in poison_at:
        events[i] = poisoned(events[i])
    seqs = await publish(js, wires(events))
    projection = Flaky()
    store = ProjectionStore(engine, projection)
    store.ensure(1)
    park = dataclasses.replace(FAST, fold_policy=FoldPolicy.PARK)
    await run_until(Worker(js, store, generation=1, settings=park), 600)

    parked_seqs = [seqs[i] for i in poison_at]
    healthy = [(s, e) for s, e in zip(seqs, events, strict=True) if e.actor != POISON]
    assert counts(engine) == oracle(healthy)
    with engine.connect() as conn:
        letters = conn.execute(
            sa.text("SELECT seq, kind, error_class, error_message FROM agora_dead_letters")
        ).all()
    assert sorted(r.seq for r in letters) == parked_seqs
    assert {(r.kind, r.error_class) for r in letters} == {("fold", "RuntimeError")}
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (600, 600, 0, 4)

    # A later copy of a parked event is a duplicate: the id is taken by the parked one.
    copy = wires([events[250]])[0]
    [copy_seq] = await publish(js, [Wire(copy.subject, copy.data, str(uuid.uuid4()))])
    await run_until(Worker(js, store, generation=1, settings=park), copy_seq)
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (601, 601, 1, 4)

    still = store.retry_dead_letters(1)
    assert still.applied == [] and sorted(still.failed) == parked_seqs

    projection.broken = False
    outcome = store.retry_dead_letters(1)
    assert outcome.applied == parked_seqs and outcome.duplicates == [] and outcome.failed == {}
    assert counts(engine) == oracle(zip(seqs, events, strict=True))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM agora_dead_letters")).scalar() == 0
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (601, 601, 1, 0)
    assert store.retry_dead_letters(1).applied == []


# -- partitions -----------------------------------------------------------------------------


async def test_four_partitions_by_community_add_up_to_one(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    rng = random.Random(6)
    events = make_events(6000, communities=13, seed=6)
    stream = wires(events)
    originals = stream[:3000]
    for wire, _ in invalid_messages(40, rng):
        stream.insert(rng.randrange(len(stream) + 1), wire)
    for w in rng.sample(originals, 40):  # copies of earlier events, as after the window
        stream.insert(
            rng.randrange(3000, len(stream) + 1), Wire(w.subject, w.data, str(uuid.uuid4()))
        )
    seqs = await publish(js, stream)
    head = seqs[-1]

    store = ProjectionStore(engine, EventCounts())
    store.ensure(1, partitions=1)
    store.ensure(2, partitions=4)
    await run_until(Worker(js, store, generation=1, settings=FAST), head)
    workers = [
        Worker(js, store, generation=2, partition=p, partitions=4, settings=FAST) for p in range(4)
    ]
    await asyncio.wait_for(asyncio.gather(*(w.run(until_seq=head) for w in workers)), 120)

    assert counts(engine, "event_counts__g2") == counts(engine, "event_counts__g1")
    by_partition = [0] * 4
    for w in stream:
        by_partition[partition_of(community_of_subject(w.subject), 4)] += 1
    assert all(by_partition), "every partition must have communities"
    total = [0, 0, 0]
    for p in range(4):
        last_seq, handled, duplicates, dead = checkpoint_row(engine, "event_counts", 2, p)
        assert last_seq == head, "each partition's checkpoint moves over the others' events"
        assert handled == by_partition[p]
        total = [total[0] + handled, total[1] + duplicates, total[2] + dead]
    assert total == list(checkpoint_row(engine, "event_counts", 1))[1:] == [head, 40, 40]

    with engine.connect() as conn:
        seen = [
            sorted(
                conn.execute(sa.text(f"SELECT event_id, seq FROM agora_seen_event_counts__g{g}"))
            )
            for g in (1, 2)
        ]
        letters = [
            conn.execute(
                sa.text(
                    "SELECT seq, partition, subject, raw, kind, error_class, error_message "
                    f"FROM agora_dead_letters WHERE generation = {g} ORDER BY seq"
                )
            ).all()
            for g in (1, 2)
        ]
    assert seen[0] == seen[1]
    assert [(r[0], *r[2:]) for r in letters[0]] == [(r[0], *r[2:]) for r in letters[1]]
    for row in letters[1]:
        assert row.partition == partition_of(community_of_subject(row.subject), 4)


# -- nats-server crash ----------------------------------------------------------------------


RECOVERIES = {
    # The worker's pull feed hears no heartbeat, asks again, learns its consumer is gone and
    # reads again from the checkpoint.
    "client": dataclasses.replace(FAST, idle_heartbeat=0.5, stall_timeout=30.0),
    # Heartbeats too rare for the client to react first: the worker's watchdog resubscribes.
    "watchdog": dataclasses.replace(FAST, idle_heartbeat=30.0, stall_timeout=1.0),
}


@pytest.mark.parametrize("recovery", sorted(RECOVERIES))
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_nats_server_crash_and_restart_under_a_running_worker(
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    engine: sa.Engine,
    running: list[tuple[asyncio.Event, asyncio.Task[None]]],
    recovery: str,
) -> None:
    events = make_events(30_000, seed=7)
    seqs = await publish(js, wires(events[:20_000]))
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    worker = Worker(js, store, generation=1, settings=RECOVERIES[recovery])
    start(running, worker)
    await wait_until(lambda: store.checkpoint(1) >= 3_000, 60, "the worker to start applying")

    nats_server.kill()
    await asyncio.to_thread(nats_server.start)
    await wait_until(lambda: nc.is_connected, 30, "the client to reconnect")
    # The reliable publisher re-sends what JetStream refuses while it is still recovering.
    results = await Publisher(nc, ack_timeout=1.0, deadline=60.0).publish_many(events[20_000:])
    assert all(r.status is PublishStatus.STORED for r in results)
    seqs += [r.seq for r in results if r.seq is not None]
    assert sorted(seqs) == list(range(1, 30_001))  # re-sent events may be stored out of order

    await wait_until(lambda: store.checkpoint(1) == 30_000, 120, "the worker to catch up", 0.1)
    assert counts(engine) == oracle(zip(seqs, events, strict=True))
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (30_000, 30_000, 0, 0)
    if recovery == "watchdog":
        assert worker.progress.resubscribes >= 1, "the worker's own recovery was not exercised"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_messages_dropped_by_the_client_are_read_again_from_the_checkpoint(
    js: JetStreamContext,
    engine: sa.Engine,
    running: list[tuple[asyncio.Event, asyncio.Task[None]]],
) -> None:
    # A client queue smaller than what nats-py reads from the socket at once: it overflows (a
    # slow consumer) and nats-py drops messages without telling the ordered consumer. The worker
    # sees the sequence gap -- or, for a drop at the end of the stream, no progress while the
    # stream has more -- and reads again from its checkpoint.
    events = make_events(4_000, seed=8)
    seqs = await publish(js, wires(events))
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    worker = Worker(
        js,
        store,
        generation=1,
        settings=dataclasses.replace(FAST, client_pending_msgs=150, stall_timeout=0.5),
    )
    start(running, worker)
    await wait_until(lambda: store.checkpoint(1) == 4_000, 120, "the worker to catch up", 0.05)
    assert worker.progress.resubscribes >= 1, "no message was dropped: the test proves nothing"
    assert counts(engine) == oracle(zip(seqs, events, strict=True))
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (4_000, 4_000, 0, 0)


async def test_a_buffer_past_until_seq_applies_exactly_through_it(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    """The cut at ``until_seq``, asserted directly: one step applies every buffered message up
    to and including ``until_seq`` and keeps the later ones. (A cut that dropped the message at
    ``until_seq`` left ``run`` spinning without ever yielding: the end-to-end tests hung.)"""
    events = make_events(10, seed=21)
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    worker = Worker(js, store, generation=1, settings=FAST)
    assert worker._lock.try_acquire()  # as run() does first
    worker._until = 6
    worker._buffer = [
        RawMessage(seq, w.subject, w.data, seq) for seq, w in enumerate(wires(events), start=1)
    ]
    worker.progress.received_seq = 10
    await worker._apply_next()
    assert (store.checkpoint(1), worker.progress.applied_seq) == (6, 6)
    assert counts(engine) == oracle(zip(range(1, 7), events[:6], strict=True))
    assert [m.seq for m in worker._buffer] == [7, 8, 9, 10]
    worker._lock.release()


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_full_buffer_pauses_the_consumer_instead_of_dropping_messages(
    js: JetStreamContext, engine: sa.Engine, partitions: int
) -> None:
    # nats-py answers flow control as soon as a message is queued, so only stopping the
    # consumer holds the server back; the worker resumes after the last message it received.
    events = make_events(12_000, seed=9)
    seqs = await publish(js, wires(events))
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1, partitions=partitions)
    small = dataclasses.replace(FAST, buffer_events=400, max_events=100, catchup_max_events=100)
    workers = [
        Worker(js, store, generation=1, partition=p, partitions=partitions, settings=small)
        for p in range(partitions)
    ]
    await asyncio.wait_for(asyncio.gather(*(w.run(until_seq=12_000) for w in workers)), 120)
    # Workers paused and resumed. Which partition's buffer fills depends on how pull requests
    # and batches interleave (a partition keeps about a third of each request, and a partition
    # that applies as fast as it receives never fills: seen [0, 4, 3]), so only the sum is bounded.
    pauses = [w.progress.pauses for w in workers]
    assert sum(pauses) >= 3, pauses
    assert [w.progress.resubscribes for w in workers] == [0] * partitions, "messages were dropped"
    assert counts(engine) == oracle(zip(seqs, events, strict=True))


async def test_a_worker_waiting_for_the_lock_leaves_the_owners_status_alone(
    js: JetStreamContext,
    engine: sa.Engine,
    running: list[tuple[asyncio.Event, asyncio.Task[None]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seqs = await publish(js, wires(make_events(100, seed=10)))
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    owner = Worker(js, store, generation=1, settings=FAST)
    stop_owner, _ = start(running, owner)
    await wait_until(lambda: store.checkpoint(1) == seqs[-1], 30, "the owner to apply")
    waiting = Worker(js, store, generation=1, settings=FAST)
    # The real lock, its attempts counted: the test waits for them instead of sleeping.
    tries: list[bool] = []
    try_acquire = waiting._lock.try_acquire

    def counted() -> bool:
        taken = try_acquire()
        tries.append(taken)
        return taken

    monkeypatch.setattr(waiting._lock, "try_acquire", counted)
    stop_waiting, waiting_task = start(running, waiting)
    await wait_until(lambda: len(tries) >= 3, 10, "the second worker to try the lock 3 times")
    assert not any(tries), "the second worker took a held lock"
    assert waiting.state is WorkerState.WAITING
    [status] = read_status(engine, "event_counts")
    assert status.worker_state in ("running", "catching_up"), "overwritten while waiting"
    stop_waiting.set()
    await asyncio.wait_for(waiting_task, 10)
    [status] = read_status(engine, "event_counts")
    assert status.worker_state in ("running", "catching_up"), "the owner's status was overwritten"
    stop_owner.set()


def advisory_holders(engine: sa.Engine) -> list[int]:
    """The backend pids holding an advisory lock in this test's database.

    pg_locks is server-wide: other tests (other pytest workers) hold locks in their own databases.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
        return [int(pid) for (pid,) in rows]


@pytest.mark.postgres
async def test_a_worker_whose_database_sessions_die_takes_its_writer_lock_again(
    js: JetStreamContext,
    postgres_url: str,
    running: list[tuple[asyncio.Event, asyncio.Task[None]]],
) -> None:
    engine = create_engine(postgres_url)
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        events = make_events(1_000, seed=13)
        seqs = await publish(js, wires(events[:500]))
        store = ProjectionStore(engine, EventCounts())
        store.ensure(1)
        start(running, Worker(js, store, generation=1, settings=FAST))
        await wait_until(lambda: store.checkpoint(1) == 500, 30, "the worker to apply")
        [holder] = advisory_holders(admin)

        # Every session of the worker dies (a restart, a proxy, an administrator), its writer
        # lock's too. The pool reconnects for the batches; the lock must be taken again.
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        await wait_until(
            lambda: len(advisory_holders(admin)) == 1 and advisory_holders(admin) != [holder],
            30,
            "the lock to be taken again",
        )
        seqs += await publish(js, wires(events[500:]))
        await wait_until(lambda: store.checkpoint(1) == 1_000, 30, "the worker to go on")
        assert counts(engine) == oracle(zip(seqs, events, strict=True))
    finally:
        engine.dispose()
        admin.dispose()


async def test_a_cancelled_worker_reports_stopped_after_its_slow_status_write(
    js: JetStreamContext,
    engine: sa.Engine,
    running: list[tuple[asyncio.Event, asyncio.Task[None]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A retired generation's worker is cancelled by its supervisor. A status write it had begun
    (in a thread, which cancelling cannot stop) must not land after its final "stopped".

    The write of "running" is held, as a busy database would hold it, until the "stopped" write
    is done or two seconds pass: a worker that does not wait for it ends with "running".
    """
    seqs = await publish(js, wires(make_events(50, seed=11)))
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    real = runner_module._upsert_status
    held = threading.Event()
    release = threading.Event()

    def slow_upsert(engine: sa.Engine, row: dict[str, object]) -> None:
        if row["state"] == "stopped":
            real(engine, row)
            release.set()
            return
        if row["state"] == "running" and not held.is_set() and store.checkpoint(1) == seqs[-1]:
            held.set()
            release.wait(2.0)
        real(engine, row)

    monkeypatch.setattr(runner_module, "_upsert_status", slow_upsert)
    worker = Worker(js, store, generation=1, settings=FAST)
    _, task = start(running, worker)
    await wait_until(held.is_set, 30, "a status write of 'running' to be under way")
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
    [status] = read_status(engine, "event_counts")
    assert status.worker_state == "stopped"
