"""The generation lifecycle (projections.lifecycle), on SQLite and on PostgreSQL.

Bootstrap; rebuilds without downtime: while generation 1 stays live and events keep arriving,
generation 2 is built by replay and swapped in atomically, and a reader querying the stable name
``event_counts`` the whole time never gets an error nor sees its totals go backwards. A stopped
build stays building and resumes; the swap can be rolled back, the unused generation dropped
(never the active one); a build stuck on a paused partition or a parked community says so; a
stale build never undoes a rollback; a broker stall does not kill a build; a new code version
makes the Supervisor rebuild by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
import structlog.testing
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from support.engine import (
    DB_KINDS,
    Breakable,
    counts,
    database_url,
    make_events,
    oracle,
    publish,
    stream_head,
    wait_until,
    wires,
)

from agora.embedded import EmbeddedNats
from events import Event
from projections.counts import EventCounts
from projections.database import create_engine
from projections.errors import ProjectionError
from projections.lifecycle import (
    AlreadyBuilding,
    BuildEnd,
    BuildPaused,
    BuildProgress,
    GenerationState,
    StartOutOfRange,
    activate,
    bootstrap,
    build,
    drop,
    live_worker,
    prepare_generation,
    release_community,
    rollback,
    serving_positions,
    start_generation,
)
from projections.locks import WriterLock
from projections.runner import Worker, WorkerSettings
from projections.status import PartitionStatus, wait_for
from projections.store import FoldPolicy, NotCaughtUp, ProjectionStore, RawMessage
from projections.supervisor import Supervisor

FAST = WorkerSettings(
    stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, lock_poll=0.1, db_retry=0.2
)


@pytest.fixture(params=DB_KINDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(database_url(request.param, tmp_path, request))
    yield engine
    engine.dispose()


@dataclass
class Published:
    """What a background publisher has published so far: (seq, event) pairs."""

    pairs: list[tuple[int, Event]] = field(default_factory=list)


async def keep_publishing(
    js: JetStreamContext, events: list[Event], out: Published, stop: asyncio.Event
) -> None:
    """Publish ``events`` one by one at a steady pace until they run out or ``stop`` is set."""
    pending: list[tuple[asyncio.Future[PubAck], Event]] = []
    for event, wire in zip(events, wires(events), strict=True):
        if stop.is_set():
            break
        headers = {"Nats-Msg-Id": wire.msg_id}
        pending.append((await js.publish_async(wire.subject, wire.data, headers=headers), event))
        if len(pending) >= 100:
            out.pairs.extend([((await f).seq, e) for f, e in pending])
            pending.clear()
        await asyncio.sleep(0.0005)
    out.pairs.extend([((await f).seq, e) for f, e in pending])


@dataclass
class Reads:
    """What a reader of the stable view saw."""

    totals: list[int] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def read_total(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.text("SELECT coalesce(sum(events), 0) FROM event_counts")).scalar()
        )


async def keep_reading(engine: sa.Engine, reads: Reads, stop: asyncio.Event) -> None:
    """Query the stable name in a loop, recording totals and any error."""
    while not stop.is_set():
        try:
            reads.totals.append(await asyncio.to_thread(read_total, engine))
        except Exception as error:  # every error is a failure of the claim
            reads.errors.append(error)
        await asyncio.sleep(0.002)


def view_target(engine: sa.Engine, view: str = "event_counts") -> str:
    """The SQL the stable view is defined with."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = :v"),
                {"v": view},
            ).scalar()
        else:
            sql = conn.execute(
                sa.text("SELECT pg_get_viewdef(CAST(:v AS regclass))"), {"v": view}
            ).scalar()
    return str(sql)


def table_names(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


@pytest.fixture
async def background() -> AsyncIterator[list[tuple[asyncio.Event, asyncio.Task[None]]]]:
    """Tasks a test runs in the background, each with its stop event; stopped at its end."""
    tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    yield tasks
    for stop, _ in tasks:
        stop.set()
    await asyncio.wait_for(asyncio.gather(*(t for _, t in tasks), return_exceptions=True), 30)


def spawn(
    tasks: list[tuple[asyncio.Event, asyncio.Task[None]]], make: object
) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(make(stop))  # type: ignore[operator]
    tasks.append((stop, task))
    return stop, task


async def test_a_rebuild_under_load_swaps_atomically_and_can_be_rolled_back(
    js: JetStreamContext,
    engine: sa.Engine,
    background: list[tuple[asyncio.Event, asyncio.Task[None]]],
) -> None:
    events = make_events(60_000, seed=21)
    published = Published()
    seqs = await publish(js, wires(events[:30_000]))
    published.pairs.extend(zip(seqs, events[:30_000], strict=True))
    store = ProjectionStore(engine, EventCounts())
    assert bootstrap(store, 1) == 1
    spawn(background, lambda stop: Worker(js, store, generation=1, settings=FAST).run(stop))
    await wait_for(engine, "event_counts", 30_000, timeout=60)

    reads = Reads()
    stop_reading, reading = spawn(background, lambda stop: keep_reading(engine, reads, stop))
    stop_publishing, publishing = spawn(
        background, lambda stop: keep_publishing(js, events[30_000:], published, stop)
    )
    await wait_until(lambda: len(published.pairs) >= 31_000, 60, "live traffic")

    number = start_generation(store, 1)
    assert number == 2
    started = time.monotonic()
    outcome = await asyncio.wait_for(build(js, store, 2, settings=FAST, poll=0.05), 120)
    assert outcome.end is BuildEnd.SWAPPED and outcome.state is GenerationState.ACTIVE
    build_seconds = time.monotonic() - started
    assert store.active() == 2
    assert "event_counts__g2" in view_target(engine)
    assert not publishing.done(), "events must keep arriving during the whole rebuild"
    swapped_at = len(reads.totals)
    await wait_until(lambda: len(reads.totals) >= swapped_at + 20, 30, "reads after the swap")

    stop_publishing.set()
    await publishing
    head = await stream_head(js)
    assert head == len(published.pairs)
    # build() stops its workers after the swap; the active generation runs on.
    _, g2_worker = spawn(
        background, lambda stop: Worker(js, store, generation=2, settings=FAST).run(stop)
    )
    await wait_for(engine, "event_counts", head, timeout=60)
    stop_reading.set()
    await reading

    assert reads.errors == [], f"the stable view failed: {reads.errors[:3]}"
    assert len(reads.totals) > 50
    assert reads.totals == sorted(reads.totals), "a reader saw the totals go backwards"
    expected = oracle(published.pairs)
    assert counts(engine, "event_counts") == expected
    assert sum(n for n, _, _ in expected.values()) == head
    # Generation 1 kept folding live events throughout; it holds the same totals.
    await wait_until(lambda: store.checkpoint(1) == head, 60, "generation 1 to catch up")
    assert counts(engine, "event_counts__g1") == expected
    print(f"build and swap of {head} events under load took {build_seconds:.2f}s")

    # Roll back: the stable names point at generation 1 again, generation 2 is kept.
    store.activate(1, require_caught_up=False)
    assert store.active() == 1
    assert "event_counts__g1" in view_target(engine)
    assert {r.generation: r.state for r in store.generations()} == {1: "active", 2: "retired"}
    assert counts(engine, "event_counts") == expected

    with pytest.raises(ProjectionError, match="is active"):
        store.drop(1)
    store.drop(2)  # while its worker still runs: the worker ends by itself at its next batch
    assert {r.generation: r.state for r in store.generations()} == {1: "active", 2: "dropped"}
    remaining = table_names(engine)
    assert "event_counts__g2" not in remaining and "agora_seen_event_counts__g2" not in remaining
    assert "event_counts__g1" in remaining
    assert counts(engine, "event_counts") == expected
    assert store.next_generation() == 3, "a dropped generation's number is never reused"

    late = events[len(published.pairs) : len(published.pairs) + 50]
    late_seqs = await publish(js, wires(late))
    await asyncio.wait_for(g2_worker, 30)
    await wait_for(engine, "event_counts", late_seqs[-1], timeout=30)
    assert counts(engine, "event_counts") == oracle(
        [*published.pairs, *zip(late_seqs, late, strict=True)]
    )


def test_activation_refuses_a_generation_behind_the_active_one(engine: sa.Engine) -> None:
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    store.ensure(2)
    messages = [
        RawMessage(seq, w.subject, w.data, seq)
        for seq, w in enumerate(wires(make_events(10, seed=22)), start=1)
    ]
    store.apply(1, 0, 0, messages, FoldPolicy.PAUSE)
    store.apply(2, 0, 0, messages[:6], FoldPolicy.PAUSE)
    with pytest.raises(NotCaughtUp):
        store.activate(2)
    assert store.active() == 1
    store.apply(2, 0, 6, messages[6:], FoldPolicy.PAUSE)
    store.activate(2)
    assert store.active() == 2
    assert counts(engine, "event_counts") == counts(engine, "event_counts__g1")


async def test_readers_never_fail_while_the_stable_view_is_swapped_back_and_forth(
    engine: sa.Engine,
    background: list[tuple[asyncio.Event, asyncio.Task[None]]],
) -> None:
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    store.ensure(2)
    messages = [
        RawMessage(seq, w.subject, w.data, seq)
        for seq, w in enumerate(wires(make_events(2_000, seed=24)), start=1)
    ]
    for generation in (1, 2):
        store.apply(generation, 0, 0, messages, FoldPolicy.PAUSE)
    readers = [Reads() for _ in range(3)]
    for reads in readers:
        spawn(background, lambda stop, reads=reads: keep_reading(engine, reads, stop))
    await wait_until(lambda: all(len(r.totals) >= 5 for r in readers), 30, "the readers to read")
    for i in range(100):
        await asyncio.to_thread(store.activate, 2 - i % 2, require_caught_up=False)
        await asyncio.sleep(0)
    counted = sum(len(r.totals) for r in readers)
    await wait_until(lambda: sum(len(r.totals) for r in readers) >= counted + 30, 30, "more reads")
    for stop, task in background:
        stop.set()
        await task
    assert [r.errors for r in readers] == [[], [], []]
    assert {t for r in readers for t in r.totals} == {2_000}, "a reader saw a half-swapped view"
    assert store.active() == 1


class EventCountsV2(EventCounts):
    """The same projection in a new code version: deploying it must rebuild."""

    version = 2


async def test_a_new_code_version_is_rebuilt_and_swapped_in_by_the_supervisor(
    js: JetStreamContext,
    engine: sa.Engine,
    background: list[tuple[asyncio.Event, asyncio.Task[None]]],
) -> None:
    events = make_events(6_000, seed=23)
    seqs = await publish(js, wires(events[:4_000]))
    store = ProjectionStore(engine, EventCounts())

    old = Supervisor(js, engine, [EventCounts()], settings=FAST, poll=0.1)
    stop_old, running_old = spawn(background, old.run)
    await wait_until(lambda: store.active() == 1, 30, "the first generation")
    await wait_for(engine, "event_counts", 4_000, timeout=60)
    stop_old.set()
    await running_old

    new = Supervisor(js, engine, [EventCountsV2()], settings=FAST, poll=0.1)
    spawn(background, new.run)
    seqs += await publish(js, wires(events[4_000:]))
    await wait_until(lambda: store.active() == 2, 60, "the new version to be swapped in", 0.05)
    await wait_for(engine, "event_counts", 6_000, timeout=60)

    rows = {r.generation: r for r in store.generations()}
    assert {g: (r.version, r.state) for g, r in rows.items()} == {
        1: (1, "retired"),
        2: (2, "active"),
    }
    assert "event_counts__g2" in view_target(engine)
    assert counts(engine, "event_counts") == oracle(zip(seqs, events, strict=True))

    # A process still running the old code (a rolling deploy) neither folds the new generation
    # with old code nor rebuilds its own version over it (which the new code would then undo).
    stale = Supervisor(js, engine, [EventCounts()], settings=FAST, poll=0.1)
    assert await asyncio.to_thread(stale._wanted) == set()
    assert [r.generation for r in store.generations()] == [1, 2]


class OtherCounts(EventCounts):
    """Another projection that would (wrongly) define the same stable table name."""

    name = "other_counts"


def test_projections_sharing_a_name_or_a_table_are_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with pytest.raises(ProjectionError, match="same name"):
        Supervisor(None, engine, [EventCounts(), EventCountsV2()])  # type: ignore[arg-type]
    with pytest.raises(ProjectionError, match="both define table event_counts"):
        Supervisor(None, engine, [EventCounts(), OtherCounts()])  # type: ignore[arg-type]
    engine.dispose()


async def test_a_stale_build_never_undoes_a_rollback_and_ends_when_dropped(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    seqs = await publish(js, wires(make_events(300, seed=25)))
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    await asyncio.wait_for(
        Worker(js, store, generation=1, settings=FAST).run(until_seq=seqs[-1]), 60
    )

    # A build waits on the writer lock (another process builds the same generation) while an
    # operator swaps the generation in and rolls it back: the stale build must not swap it again.
    assert start_generation(store, 1) == 2
    lock = WriterLock(engine, "event_counts", 2, 0)
    assert lock.try_acquire()
    task = asyncio.create_task(build(js, store, 2, settings=FAST, poll=0.05))
    assert activate(store, 2, force=True) == 1  # swapped in by `agora rebuild`
    assert rollback(store, 1) == 2  # rolled back: `agora activate NAME 1 --force`
    lock.release()
    ended = await asyncio.wait_for(task, 30)
    assert store.active() == 1, "the stale build swapped g2 in again, undoing the rollback"
    assert (ended.end, ended.state) == (BuildEnd.SUPERSEDED, GenerationState.RETIRED)

    # A build whose generation is dropped under it ends instead of retrying forever.
    assert start_generation(store, 1) == 3
    held = WriterLock(engine, "event_counts", 3, 0)
    assert held.try_acquire()
    task = asyncio.create_task(build(js, store, 3, settings=FAST, poll=0.05))
    drop(store, 3)  # `agora drop NAME 3` while a worker builds it
    held.release()
    ended = await asyncio.wait_for(task, 30)
    assert (ended.end, ended.state) == (BuildEnd.SUPERSEDED, GenerationState.DROPPED)
    assert {r.generation: r.state for r in store.generations()} == {
        1: "active",
        2: "retired",
        3: "dropped",
    }


# -- bootstrap, preparing, resuming ---------------------------------------------------------------


def test_bootstrap_creates_g1_once_and_refuses_a_registry_without_an_active_generation(
    engine: sa.Engine,
) -> None:
    store = ProjectionStore(engine, EventCounts())
    assert bootstrap(store, 2) == 1
    assert bootstrap(store, 2) == 1, "bootstrap is idempotent"
    rows = store.generations()
    assert [(r.generation, r.state, r.partitions) for r in rows] == [(1, GenerationState.ACTIVE, 2)]
    assert rows[0].state == "active", "the stored value stays the plain string"

    other = ProjectionStore(engine, OtherCounts())
    other.ensure(1)  # a lone building generation (a first build interrupted) is activated
    assert bootstrap(other, 1) == 1 and other.active() == 1
    assert start_generation(other, 1) == 2
    drop(other, 2)
    with pytest.raises(ProjectionError, match="is active"):
        drop(other, 1)
    rollback(other, 1)
    with pytest.raises(ProjectionError, match="no generation 7"):
        drop(other, 7)


async def test_a_stopped_build_stays_building_at_its_checkpoint_and_resumes(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    seqs = await publish(js, wires(make_events(1_500, seed=26)))
    pairs = list(zip(seqs, make_events(1_500, seed=26), strict=True))
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    with pytest.raises(StartOutOfRange, match="past the stream's last seq 1500"):
        await prepare_generation(js, store, start_seq=1_502)
    row = await prepare_generation(js, store, partitions=2)
    assert (row.generation, row.state, row.partitions, row.start_seq) == (
        2,
        GenerationState.BUILDING,
        2,
        1,
    )
    with pytest.raises(AlreadyBuilding, match=r"g2 is already building.*--resume 2"):
        await prepare_generation(js, store)

    # The writer lock of one partition is held elsewhere: the build cannot finish; stop it.
    lock = WriterLock(engine, "event_counts", 2, 1)
    assert lock.try_acquire()
    stop = asyncio.Event()
    seen: list[BuildProgress] = []
    task = asyncio.create_task(
        build(js, store, 2, stop=stop, on_progress=seen.append, settings=FAST, poll=0.05)
    )
    await wait_until(lambda: store.checkpoint(2, 0) == 1_500, 60, "partition 0 to catch up")
    stop.set()
    stopped = await asyncio.wait_for(task, 30)
    lock.release()
    assert (stopped.end, stopped.state, stopped.finished) == (
        BuildEnd.STOPPED,
        GenerationState.BUILDING,
        False,
    )
    assert (stopped.checkpoint, stopped.head) == (0, 1_500), "the slowest partition's checkpoint"
    assert seen and seen[-1].head == 1_500
    assert store.active() == 1

    resumed_row = await prepare_generation(js, store, resume=2)
    assert resumed_row.generation == 2
    resumed = await asyncio.wait_for(build(js, store, 2, settings=FAST, poll=0.05), 60)
    assert (resumed.end, resumed.checkpoint) == (BuildEnd.SWAPPED, 1_500)
    assert store.active() == 2
    assert counts(engine, "event_counts") == oracle(pairs)
    with pytest.raises(ProjectionError, match="only a building one resumes"):
        await prepare_generation(js, store, resume=1)
    # Building an active generation again ends at once: it is swapped in already.
    assert (await build(js, store, 2, settings=FAST)).end is BuildEnd.SWAPPED


async def test_a_build_without_swap_ends_caught_up_and_stays_building(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    await publish(js, wires(make_events(400, seed=27)))
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    number = (await prepare_generation(js, store, start_seq=101)).generation
    ended = await asyncio.wait_for(build(js, store, number, swap=False, settings=FAST), 60)
    assert (ended.end, ended.state, ended.finished, ended.swapped) == (
        BuildEnd.CAUGHT_UP,
        GenerationState.BUILDING,
        True,
        False,
    )
    assert (ended.start_seq, ended.checkpoint, ended.head) == (101, 400, 400)
    assert store.active() == 1
    assert activate(store, number) == 1
    assert {r.generation: r.state for r in store.generations()} == {1: "retired", 2: "active"}


# -- stuck builds ---------------------------------------------------------------------------------


async def test_a_build_paused_on_a_fold_error_says_where(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    events = make_events(200, seed=28)
    events[120] = msgspec.structs.replace(events[120], actor="poison")
    await publish(js, wires(events))
    store = ProjectionStore(engine, Breakable("poison"))
    bootstrap(store, 1)
    number = start_generation(store, 1)
    paused = replace(FAST, fold_policy=FoldPolicy.PAUSE)
    with pytest.raises(
        BuildPaused,
        match=rf"event_counts g{number} p0 paused at checkpoint \d+: fold failed at seq 121",
    ):
        await asyncio.wait_for(build(js, store, number, settings=paused, poll=0.05), 60)
    assert {r.generation: r.state for r in store.generations()} == {1: "active", 2: "building"}


async def test_a_build_with_a_parked_community_names_the_command_that_releases_it(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    events = make_events(300, seed=29)
    events[150] = msgspec.structs.replace(events[150], actor="poison")
    seqs = await publish(js, wires(events))
    projection = Breakable("poison")
    store = ProjectionStore(engine, projection)
    bootstrap(store, 1)
    number = start_generation(store, 1)
    community = events[150].community
    with pytest.raises(BuildPaused) as stuck:
        await asyncio.wait_for(build(js, store, number, settings=FAST, poll=0.05), 60)
    assert f"community {community} parked at seq 151" in str(stuck.value)
    assert f"agora dlq retry event_counts --community {community} --generation {number}" in str(
        stuck.value
    )
    assert store.active() == 1, "a build with a parked community is not swapped in"

    projection.broken.clear()  # the fix is deployed
    released_in, outcome = release_community(store, community, generation=number)
    assert released_in == number and outcome.failed_seq is None
    ended = await asyncio.wait_for(build(js, store, number, settings=FAST, poll=0.05), 60)
    assert ended.swapped and store.active() == number
    assert counts(engine, "event_counts") == oracle(zip(seqs, events, strict=True))


# -- availability ---------------------------------------------------------------------------------


async def test_a_broker_stall_during_a_build_does_not_end_it(
    nats_server: EmbeddedNats, nc: Client, js: JetStreamContext, engine: sa.Engine
) -> None:
    """Failed before: ``cannot read stream AGORA: NATS error: nats: timeout`` ended the build.

    The broker is frozen for three times the client's request timeout while the build looks
    at the stream's head; the build must ride it out, then finish and swap.
    """
    seqs = await publish(js, wires(make_events(500, seed=30)))
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    assert start_generation(store, 1) == 2
    lock = WriterLock(engine, "event_counts", 2, 0)  # the build waits: it only polls the head
    assert lock.try_acquire()
    timeout = 1.0
    seen: list[BuildProgress] = []
    task = asyncio.create_task(
        build(nc.jetstream(timeout=timeout), store, 2, on_progress=seen.append, settings=FAST)
    )
    await wait_until(lambda: len(seen) > 0, 30, "the build to read the stream's head")
    nats_server.pause()
    try:
        await asyncio.wait({task}, timeout=3 * timeout)  # the fault's length: not a wait-and-hope
    finally:
        nats_server.resume()
    lock.release()
    ended = await asyncio.wait_for(task, 60)
    assert ended.end is BuildEnd.SWAPPED and store.active() == 2
    assert ended.checkpoint == seqs[-1]


def test_serving_positions_and_live_workers_are_read_from_status_rows() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def row(
        name: str, generation: int, state: str, partition: int, checkpoint: int, worker: str
    ) -> PartitionStatus:
        fresh = now - timedelta(seconds=5)
        return PartitionStatus(
            name, generation, 1, state, partition, checkpoint, 0, 0, 0, worker, None,
            f"w-{name}-{generation}-{partition}", None, fresh,
        )  # fmt: skip

    rows = [
        row("a", 1, "retired", 0, 5, "paused"),  # history: neither a position nor a pause
        row("a", 2, "active", 0, 40, "running"),
        row("a", 2, "active", 1, 30, "catching_up"),
        row("b", 1, "active", 0, 7, "stopped"),
        row("b", 2, "building", 0, 3, "paused"),
        row("c", 1, "active", 0, 9, "running"),  # not asked for
    ]
    points, paused = serving_positions(rows, ["a", "b", "d"])
    assert (points, paused) == ({"a": 30, "b": 7, "d": None}, {"b"})
    assert live_worker(rows, 2, stale_after=30, now=now) == "w-a-2-0"
    assert live_worker(rows, 2, stale_after=1, now=now) is None, "a stale row is no live worker"
    assert live_worker(rows, 1, stale_after=30, now=now) == "w-c-1-0"
    assert live_worker(rows, None, stale_after=30, now=now) is None


async def test_a_failed_build_in_the_supervisor_is_logged_and_tried_again(
    js: JetStreamContext,
    engine: sa.Engine,
    background: list[tuple[asyncio.Event, asyncio.Task[None]]],
) -> None:
    """Failed before: a build task's error was never retrieved (asyncio's "Task exception was
    never retrieved" at best); now the supervisor logs it and builds the generation again."""
    await publish(js, wires(make_events(100, seed=32)))
    store = ProjectionStore(engine, EventCounts())
    bootstrap(store, 1)
    assert start_generation(store, 1) == 2
    with engine.begin() as conn:  # g2 as an older Agora made it: its workers refuse to fold it
        conn.execute(sa.text("ALTER TABLE agora_seen_event_counts__g2 DROP COLUMN digest"))
    supervisor = Supervisor(js, engine, [EventCounts()], settings=FAST, poll=0.05)
    with structlog.testing.capture_logs() as logs:
        spawn(background, supervisor.run)

        def failures() -> list[dict[str, object]]:
            return [e for e in logs if e["event"] == "build failed; trying again"]

        await wait_until(lambda: len(failures()) >= 2, 60, "the failed build, logged twice")
        drop(store, 2)  # the operator's answer: drop it; no build is started again
        await wait_until(lambda: not supervisor._builds, 30, "the builds to end")
    first = failures()[0]
    assert (first["projection"], first["generation"]) == ("event_counts", 2)
    assert "built by an older Agora" in str(first["error"])
    assert store.active() == 1
