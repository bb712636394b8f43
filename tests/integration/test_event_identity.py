"""What names an event on the stream: its subject binds its payload, its id names it forever.

Issue 14, findings 2 and 3: a producer allowed only ``agora.c42.>`` could fold events into c99
by naming c99 in the payload, a payload type could differ from the subject's, and an id re-sent
with other content (after the server's duplicate window) was applied a second time. Each test
publishes straight to a real nats-server (what a hostile producer can do) and folds with a real
worker on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
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
    wires,
)

from events import CODEC, Event
from projections.counts import EventCounts
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.store import ProjectionStore

FAST = WorkerSettings(stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, db_retry=0.2)


@pytest.fixture(params=DB_KINDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(database_url(request.param, tmp_path, request))
    yield engine
    engine.dispose()


async def fold_through(js: JetStreamContext, engine: sa.Engine, seq: int) -> ProjectionStore:
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    worker = Worker(js, store, generation=1, settings=FAST)
    await asyncio.wait_for(worker.run(until_seq=seq), 90)
    return store


def letters(engine: sa.Engine) -> dict[int, tuple[str, str, str, str]]:
    """Dead letters by sequence: (subject, kind, error class, error message)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT seq, subject, kind, error_class, error_message FROM agora_dead_letters")
        ).all()
    return {int(r[0]): (r[1], r[2], r[3], r[4]) for r in rows}


def fresh_copy(wire: Wire) -> Wire:
    """The same bytes under a new Nats-Msg-Id: what the server stores once its window passed."""
    return Wire(wire.subject, wire.data, str(uuid.uuid4()))


async def test_a_payload_whose_community_or_type_differs_from_its_subject_is_set_aside(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    events = make_events(300, communities=3, seed=40)
    valid = wires(events)
    # A producer confined to agora.c42.> names c99 in the payload; another sends a post on a
    # member.joined subject. Both are valid events on a subject that is not theirs.
    other_community = [
        Wire(f"agora.c42.{e.TYPE}", CODEC.encode(msgspec.structs.replace(e, community="c99")), "")
        for e in make_events(20, seed=41, tag="forged")
    ]
    other_type = [
        Wire(f"agora.{e.community}.member.joined", CODEC.encode(e), "")
        for e in make_events(20, seed=42, tag="retyped")
        if e.TYPE != "member.joined"
    ]
    hostile = [Wire(w.subject, w.data, str(uuid.uuid4())) for w in other_community + other_type]
    mixed = valid[:150] + hostile + valid[150:]
    seqs = await publish(js, mixed)
    await fold_through(js, engine, seqs[-1])

    applied = [(s, e) for s, e in zip(seqs[:150] + seqs[150 + len(hostile) :], events, strict=True)]
    assert counts(engine) == oracle(applied)
    assert not any(key[0] == "c99" for key in counts(engine)), "c42's producer wrote into c99"
    found = letters(engine)
    assert sorted(found) == seqs[150 : 150 + len(hostile)]
    for seq, wire in zip(seqs[150:], hostile, strict=False):
        subject, kind, error_class, message = found[seq]
        assert (subject, kind, error_class) == (wire.subject, "subject_mismatch", "SubjectMismatch")
        assert wire.subject in message and "belongs on 'agora." in message
    events_applied = len(events)
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (
        seqs[-1],
        events_applied + len(hostile),
        0,
        len(hostile),
    )


async def test_an_id_resent_with_other_content_is_set_aside_with_both_sequences(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    events = make_events(200, seed=43)
    seqs = await publish(js, wires(events))
    # After the duplicate window: 50 ids again with another event time, and 10 exact copies,
    # which stay plain duplicates.
    moved = [
        msgspec.structs.replace(e, occurred_at=e.occurred_at + timedelta(hours=1))
        for e in events[:50]
    ]
    again = [fresh_copy(w) for w in wires(moved[:50])]
    again += [fresh_copy(w) for w in wires(events[100:110])]
    copies = await publish(js, again)
    # One batch holding an id's first copy and a different second copy.
    pair = make_events(1, seed=44, tag="pair")[0]
    changed = msgspec.structs.replace(pair, actor="m-other")
    pair_seqs = await publish(js, [fresh_copy(w) for w in wires([pair, changed])])

    await fold_through(js, engine, pair_seqs[-1])

    assert counts(engine) == oracle([*zip(seqs, events, strict=True), (pair_seqs[0], pair)])
    found = letters(engine)
    conflicting = [*copies[:50], pair_seqs[1]]
    assert sorted(found) == conflicting
    for seq, first in [*zip(copies[:50], seqs[:50], strict=True), (pair_seqs[1], pair_seqs[0])]:
        _, kind, error_class, message = found[seq]
        assert (kind, error_class) == ("conflicting_duplicate", "ConflictingDuplicate")
        assert f"applied at seq {first};" in message and f"copy at seq {seq}" in message
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (pair_seqs[-1], 262, 10, 51)


async def test_another_communitys_event_under_the_same_id_suppresses_nothing(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    # Ids are chosen by producers. c1's producer learns (or guesses) the id of an event c2 is
    # about to publish and sends its own event under it first, at the same event time.
    real = make_events(30, communities=1, seed=45, tag="real")
    real = [msgspec.structs.replace(e, community="c2") for e in real]
    squatters = [msgspec.structs.replace(e, community="c1", actor="squatter") for e in real]
    seqs = await publish(js, [fresh_copy(w) for w in wires(squatters + real)])
    await fold_through(js, engine, seqs[-1])

    pairs: list[tuple[int, Event]] = list(zip(seqs, squatters + real, strict=True))
    assert counts(engine) == oracle(pairs), "c1's events under c2's ids suppressed c2's"
    assert letters(engine) == {}


async def test_a_retried_conflicting_copy_stays_set_aside_and_an_exact_one_is_dropped(
    js: JetStreamContext, engine: sa.Engine
) -> None:
    events = make_events(20, seed=46)
    seqs = await publish(js, wires(events))
    other = msgspec.structs.replace(events[0], actor="m-other")
    [conflict] = await publish(js, [fresh_copy(w) for w in wires([other])])
    store = await fold_through(js, engine, conflict)
    assert sorted(letters(engine)) == [conflict]

    outcome = store.retry_dead_letters(1)
    assert (outcome.applied, outcome.duplicates) == ([], [])
    assert list(outcome.failed) == [conflict]
    assert f"applied at seq {seqs[0]};" in outcome.failed[conflict]
    assert counts(engine) == oracle(zip(seqs, events, strict=True))
