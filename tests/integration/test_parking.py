"""Sequenced dead letters: a poison event parks its own community, never the others.

* One poison event in c1 among 10,000 events of c0..c4, projected by a real worker from a real
  JetStream stream into SQLite and PostgreSQL: the other communities are complete, c1 is complete
  up to the poison event, the checkpoint reaches the head; after the fix, ``retry_community``
  completes c1, later c1 events flow again, and every table equals a clean replay's.
* A second failure during the retry parks the community at the new failing event, with its new
  error; the next retry finishes it.
* Skipping the poison event records the reason in its dead letter and releases the held events in
  order (a held copy of an event is counted once, as a duplicate).
* A build with a parked community is not swapped in; retrying every dead letter releases a parked
  community in order; held copies and conflicting copies end as a run that never parked.
* A worker SIGKILLed at random checkpoints while parking and holding ends, once released,
  identical to a clean replay (marked slow).

On main before this change the first test fails (checked by running it with the pause policy,
main's default): the partition pauses at the poison event, the checkpoint never reaches the head
and c0, c2, c3, c4 stall with c1. The others need the hold policy, which did not exist.
The store-level tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from support.engine import (
    DB_KINDS,
    Breakable,
    checkpoint_row,
    counts,
    database_url,
    dump,
    make_events,
    oracle,
    postgres_database,
    publish,
    stream_head,
    wait_until,
    wires,
)

from agora.embedded import EmbeddedNats
from events import CODEC, Event, MemberJoined, derived_event_id
from events.subjects import subject_of
from projections.counts import EventCounts
from projections.database import create_engine
from projections.errors import DatabaseError
from projections.runner import Worker, WorkerSettings
from projections.status import parked_rows
from projections.store import FoldPolicy, NotCaughtUp, ProjectionStore, RawMessage

FAST = WorkerSettings(
    stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, lock_poll=0.1, db_retry=0.2
)
"""Worker settings for tests (the fold policy is the default one)."""


def sample(engine: sa.Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY seq"))]


def gauge(name: str, community: str) -> float | None:
    labels = {"projection": "event_counts", "generation": "1", "community": community}
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture(params=DB_KINDS)
def two_databases(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """The database under test and one for a clean replay, of the same kind."""
    url = database_url(request.param, tmp_path, request)
    drop = None
    if request.param == "sqlite":
        clean_url = f"sqlite:///{tmp_path / 'clean'}.db"
    else:
        clean_url, drop = postgres_database(request.getfixturevalue("postgres_server_url"))
    engines = create_engine(url), create_engine(clean_url)
    yield engines
    for engine in engines:
        engine.dispose()
    if drop is not None:
        drop()


async def test_a_poison_event_parks_its_community_and_the_others_complete(
    js: JetStreamContext, two_databases: tuple[sa.Engine, sa.Engine]
) -> None:
    engine, clean = two_databases
    events = make_events(10_000, communities=5, seed=14)
    c1 = [i for i, e in enumerate(events) if e.community == "c1"]
    poison_at = c1[len(c1) // 3]
    events[poison_at] = msgspec.structs.replace(events[poison_at], actor="poison")
    seqs = await publish(js, wires(events))
    poison_seq = seqs[poison_at]

    projection = Breakable("poison")
    store = ProjectionStore(engine, projection)
    store.ensure(1)
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(js, store, generation=1, settings=FAST).run(stop))
    try:
        head = await stream_head(js)
        await wait_until(lambda: store.checkpoint(1) >= head, 90, "the checkpoint to pass c1")

        def complete_but_c1(pairs: list[tuple[int, Event]]) -> list[tuple[int, Event]]:
            return [(s, e) for s, e in pairs if e.community != "c1" or s < poison_seq]

        pairs = list(zip(seqs, events, strict=True))
        assert counts(engine) == oracle(complete_but_c1(pairs))
        held_seqs = [s for s, e in pairs if e.community == "c1" and s > poison_seq]
        [parking] = parked_rows(engine)
        assert (parking.community, parking.first_seq, parking.held) == (
            "c1",
            poison_seq,
            len(held_seqs),
        )
        assert parking.error == f"RuntimeError: cannot fold the event at seq {poison_seq}"
        assert parking.occurred_at == events[poison_at].occurred_at
        assert [r[2] for r in sample(engine, "agora_held")] == held_seqs
        # The worker sets its gauges just after the batch's commit: wait for them.
        await wait_until(
            lambda: gauge("agora_projection_held_events", "c1") == len(held_seqs),
            10,
            "the held-events gauge",
        )
        assert gauge("agora_projection_parked_first_seq", "c1") == poison_seq

        # More traffic while parked: c1's is held, the rest applied, in later batches.
        more = make_events(300, communities=5, seed=15, tag="more")
        seqs += await publish(js, wires(more))
        events += more
        pairs = list(zip(seqs, events, strict=True))
        head = await stream_head(js)
        await wait_until(lambda: store.checkpoint(1) >= head, 60, "the second burst")
        assert counts(engine) == oracle(complete_but_c1(pairs))
        held_seqs = [s for s, e in pairs if e.community == "c1" and s > poison_seq]
        assert [r[2] for r in sample(engine, "agora_held")] == held_seqs

        # Retried before the fix: it fails again at the same event and stays parked.
        again = await asyncio.to_thread(store.retry_community, 1, "c1")
        assert (again.failed_seq, again.applied) == (poison_seq, [])
        assert [r.first_seq for r in parked_rows(engine)] == [poison_seq]

        projection.broken.clear()  # the fix is deployed
        released = await asyncio.to_thread(store.retry_community, 1, "c1")
        assert released.failed_seq is None and released.error is None
        assert released.applied == [poison_seq, *held_seqs] and released.duplicates == []
        assert parked_rows(engine) == [] and sample(engine, "agora_held") == []
        assert counts(engine) == oracle(pairs)

        # c1 flows again through the running worker, which drops its gauges.
        last = make_events(100, communities=5, seed=16, tag="last")
        seqs += await publish(js, wires(last))
        events += last
        head = await stream_head(js)
        await wait_until(lambda: store.checkpoint(1) >= head, 60, "the last burst")
        assert counts(engine) == oracle(zip(seqs, events, strict=True))
        await wait_until(
            lambda: gauge("agora_projection_parked_first_seq", "c1") is None,
            10,
            "the parked gauge to go",
        )
        assert gauge("agora_projection_held_events", "c1") is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    replay = ProjectionStore(clean, EventCounts())
    replay.ensure(1)
    await asyncio.wait_for(Worker(js, replay, generation=1, settings=FAST).run(until_seq=head), 90)
    assert dump(engine) == dump(clean)
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (head, head, 0, 0)


# -- store-level: a second failure, a skip --------------------------------------------------

T_NS = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1e9)


def joined(seq: int, community: str, actor: str = "m1", tag: str = "") -> RawMessage:
    event = MemberJoined(
        id=derived_event_id("parking", tag or str(seq)),
        community=community,
        actor=actor,
        occurred_at=datetime(2026, 5, 1, tzinfo=UTC) + timedelta(minutes=seq),
        member=actor,
    )
    return RawMessage(seq, subject_of(event), CODEC.encode(event), T_NS + seq * 1000)


def pairs_of(messages: Sequence[RawMessage]) -> list[tuple[int, Event]]:
    return [(m.seq, CODEC.decode(m.data)) for m in messages]


@pytest.fixture(params=DB_KINDS)
def store_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(database_url(request.param, tmp_path, request))
    yield engine
    engine.dispose()


def letters(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT seq, kind, error_message FROM agora_dead_letters ORDER BY seq")
            )
        ]


def test_a_second_failure_during_the_retry_parks_the_community_at_the_new_event(
    store_engine: sa.Engine,
) -> None:
    engine = store_engine
    batch = [joined(s, f"c{s % 3}") for s in range(1, 31)]
    batch[3] = joined(4, "c1", "poison")
    batch[12] = joined(13, "c1", "poison2")
    projection = Breakable("poison", "poison2")
    store = ProjectionStore(engine, projection)
    store.ensure(1)
    first = store.apply(1, 0, 0, batch[:15], FoldPolicy.HOLD)
    assert first.newly_parked == ("c1",) and first.dead_letters == 1
    second = store.apply(1, 0, 15, batch[15:], FoldPolicy.HOLD)
    assert second.newly_parked == () and [p.community for p in second.parked] == ["c1"]
    c1_after = [m.seq for m in batch if m.seq > 4 and CODEC.decode(m.data).community == "c1"]
    assert [r[2] for r in sample(engine, "agora_held")] == c1_after
    assert second.parked[0].held == len(c1_after)

    projection.broken = {"poison2"}  # the first bug is fixed, not the second
    outcome = store.retry_community(1, "c1")
    assert outcome.applied == [4, 7, 10] and outcome.failed_seq == 13
    assert outcome.error == "RuntimeError: cannot fold the event at seq 13"
    [parking] = parked_rows(engine)
    assert (parking.first_seq, parking.held) == (13, len(c1_after) - 3)
    assert parking.error == outcome.error
    assert parking.since == datetime.fromtimestamp((T_NS + 13_000) / 1e9, UTC)
    assert letters(engine) == [(13, "fold", "cannot fold the event at seq 13")]
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (30, 30, 0, 1)
    expected = [(s, e) for s, e in pairs_of(batch) if e.community != "c1" or s < 13]
    assert counts(engine) == oracle(expected)

    projection.broken.clear()
    done = store.retry_community(1, "c1")
    assert done.applied == [s for s in c1_after if s >= 13] and done.failed_seq is None
    assert counts(engine) == oracle(pairs_of(batch))
    assert parked_rows(engine) == [] and letters(engine) == []
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (30, 30, 0, 0)
    # Released: the next batch folds c1 at once.
    store.apply(1, 0, 30, [joined(31, "c1")], FoldPolicy.HOLD)
    assert counts(engine) == oracle(pairs_of([*batch, joined(31, "c1")]))


def test_skipping_the_poison_event_releases_the_held_events_in_order(
    store_engine: sa.Engine,
) -> None:
    engine = store_engine
    batch = [joined(s, f"c{s % 2}") for s in range(1, 11)]
    batch[2] = joined(3, "c1", "poison")
    # The event of seq 5 again (c1, held twice): the release counts it once.
    batch[7] = RawMessage(8, batch[4].subject, batch[4].data, T_NS + 8000)
    store = ProjectionStore(engine, Breakable("poison"))
    store.ensure(1)
    store.apply(1, 0, 0, batch[:6], FoldPolicy.HOLD)
    store.apply(1, 0, 6, batch[6:], FoldPolicy.HOLD)
    assert [p.community for p in parked_rows(engine)] == ["c1"]

    outcome = store.retry_community(1, "c1", skip_reason="bad import of 2026-05-01")
    assert outcome.skipped == 3 and outcome.failed_seq is None
    assert outcome.applied == [5, 7, 9] and outcome.duplicates == [8]
    assert letters(engine) == [
        (3, "skipped", "skipped: bad import of 2026-05-01 (was: cannot fold the event at seq 3)")
    ]
    expected = [(s, e) for s, e in pairs_of(batch) if s not in (3, 8)]
    assert counts(engine) == oracle(expected)
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (10, 10, 1, 1)
    assert parked_rows(engine) == [] and sample(engine, "agora_held") == []
    # A skipped letter is retried only when named.
    assert store.retry_dead_letters(1).applied == []
    assert letters(engine)[0][1] == "skipped"


def test_a_build_with_a_parked_community_is_not_swapped_in_until_it_is_released(
    store_engine: sa.Engine,
) -> None:
    """Failed before: a build swapped in whatever its fold had parked."""
    engine = store_engine
    batch = [joined(s, f"c{s % 2}") for s in range(1, 9)]
    batch[4] = joined(5, "c1", "poison")
    projection = Breakable("poison")
    store = ProjectionStore(engine, projection)
    store.ensure(1)
    store.apply(1, 0, 0, batch, FoldPolicy.HOLD)
    with pytest.raises(NotCaughtUp, match="parked community: c1 at seq 5"):
        store.activate(1, only_building=True)
    projection.broken.clear()
    assert store.retry_community(1, "c1").failed_seq is None
    store.activate(1, only_building=True)
    assert store.active() == 1 and counts(engine, "event_counts") == oracle(pairs_of(batch))


# -- crashes --------------------------------------------------------------------------------

WORKER_PROC = Path(__file__).with_name("worker_proc.py")


@pytest.mark.slow
async def test_sigkill_while_parking_and_holding_loses_nothing_and_applies_nothing_twice(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    two_databases: tuple[sa.Engine, sa.Engine],
    tmp_path: Path,
) -> None:
    """A worker SIGKILLed at random checkpoints while it parks c3 and c7 and holds their events
    ends, once released, identical to a clean replay: parking, holding and the checkpoint
    commit together."""
    engine, clean = two_databases
    total = 20_000
    events = make_events(total, communities=10, seed=17)
    for community in ("c3", "c7"):
        at = [i for i, e in enumerate(events) if e.community == community][300]
        events[at] = msgspec.structs.replace(events[at], actor="poison")
    seqs = await publish(js, wires(events))
    poison = {e.community: s for s, e in zip(seqs, events, strict=True) if e.actor == "poison"}
    store = ProjectionStore(engine, Breakable("poison"))
    store.ensure(1)
    url = engine.url.render_as_string(hide_password=False)
    log = (tmp_path / "workers.log").open("ab")
    rng = random.Random(1407)

    def child() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                *(sys.executable, str(WORKER_PROC), "--nats", nats_server.url, "--db", url),
                *("--until", str(total), "--batch", "500", "--poison", "poison"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[2],
        )

    kills = 0
    for _ in range(10):
        before = store.checkpoint(1)
        target = before + rng.randrange(200, 2_500)
        process = child()
        await wait_until(
            lambda: store.checkpoint(1) >= target or process.poll() is not None,  # noqa: B023
            60,
            f"the checkpoint to pass {target}",
            0.005,
        )
        if process.poll() is None:
            kills += 1
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert kills >= 6, "most kills must hit a live worker"
    last = child()
    await wait_until(lambda: last.poll() is not None, 120, "the last worker to finish")
    assert last.wait() == 0
    log.close()

    pairs = list(zip(seqs, events, strict=True))
    stopped = [(s, e) for s, e in pairs if e.community not in poison or s < poison[e.community]]
    assert counts(engine) == oracle(stopped)
    assert {p.community: p.first_seq for p in parked_rows(engine)} == poison
    expected_held = [s for s, e in pairs if e.community in poison and s > poison[e.community]]
    assert [r[2] for r in sample(engine, "agora_held")] == expected_held

    store.projection.broken.clear()  # type: ignore[attr-defined]
    for community in poison:
        assert store.retry_community(1, community).failed_seq is None
    replay = ProjectionStore(clean, EventCounts())
    replay.ensure(1)
    await asyncio.wait_for(Worker(js, replay, generation=1, settings=FAST).run(until_seq=total), 90)
    assert dump(engine) == dump(clean)


def test_retrying_all_dead_letters_releases_a_parked_community_in_order(
    store_engine: sa.Engine,
) -> None:
    """Failed before: retry applied the poison event after its community's later events."""
    engine = store_engine
    batch = [joined(s, f"c{s % 2}") for s in range(1, 11)]
    batch[2] = joined(3, "c1", "poison")
    projection = Breakable("poison")
    store = ProjectionStore(engine, projection)
    store.ensure(1)
    store.apply(1, 0, 0, batch, FoldPolicy.HOLD)
    assert store.retry_dead_letters(1).failed == {3: "RuntimeError: cannot fold the event at seq 3"}
    projection.broken.clear()
    outcome = store.retry_dead_letters(1)
    assert (outcome.applied, outcome.failed) == ([3], {})
    assert parked_rows(engine) == [] and sample(engine, "agora_held") == []
    assert counts(engine) == oracle(pairs_of(batch))
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (10, 10, 0, 0)


def test_held_copies_and_conflicting_copies_end_as_a_clean_replay_does(tmp_path: Path) -> None:
    """Released in order, a held copy of an event is a duplicate and a held copy with other
    content a conflicting-duplicate letter, exactly as in a run that never parked."""
    batch = [joined(s, f"c{s % 2}") for s in range(1, 13)]
    batch[2] = joined(3, "c1", "poison")
    batch[7] = RawMessage(8, batch[4].subject, batch[4].data, T_NS + 8000)  # seq 5 again
    batch[10] = joined(11, "c1", tag="7")  # seq 7's id, other content
    engines = [create_engine(f"sqlite:///{tmp_path / name}.db") for name in ("parked", "clean")]
    try:
        projection = Breakable("poison")
        store = ProjectionStore(engines[0], projection)
        store.ensure(1)
        store.apply(1, 0, 0, batch[:6], FoldPolicy.HOLD)
        store.apply(1, 0, 6, batch[6:], FoldPolicy.HOLD)
        projection.broken.clear()
        outcome = store.retry_community(1, "c1")
        assert (outcome.applied, outcome.duplicates) == ([3, 5, 7, 9], [8])
        clean = ProjectionStore(engines[1], EventCounts())
        clean.ensure(1)
        clean.apply(1, 0, 0, batch, FoldPolicy.HOLD)
        assert dump(engines[0]) == dump(engines[1])
        assert letters(engines[0]) == [
            (
                11,
                "conflicting_duplicate",
                f"event {CODEC.decode(batch[6].data).id} of community 'c1' was applied at seq 7; "
                "the copy at seq 11 has other content and is set aside",
            )
        ]
    finally:
        for engine in engines:
            engine.dispose()


def test_a_rolled_back_attempt_does_not_hide_a_parking_from_the_next_batch(
    tmp_path: Path,
) -> None:
    """The store skips the lookup while it knows its partition has nothing parked; an attempt
    that rolled back must not leave that knowledge behind for the checkpoint a retry parks at.
    (Failed before the fix: the next batch folded c1's event past its poison event.)"""
    engine = create_engine(f"sqlite:///{tmp_path / 'rollback.db'}")
    try:
        projection = Breakable()
        store = ProjectionStore(engine, projection)
        store.ensure(1)
        batch = [joined(1, "c0"), joined(2, "c1", "poison"), joined(3, "c1")]
        with engine.begin() as conn:  # a database fault on the checkpoint, once
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE UPDATE ON agora_checkpoints "
                "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
            )
        with pytest.raises(DatabaseError, match="disk trouble"):
            store.apply(1, 0, 0, batch, FoldPolicy.HOLD)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse")
        projection.broken.add("poison")  # this time the fold fails on seq 2
        assert store.apply(1, 0, 0, batch, FoldPolicy.HOLD).newly_parked == ("c1",)
        outcome = store.apply(1, 0, 3, [joined(4, "c1")], FoldPolicy.HOLD)
        assert outcome.held == 1 and outcome.applied == 0
        assert [r[2] for r in sample(engine, "agora_held")] == [3, 4]
    finally:
        engine.dispose()
