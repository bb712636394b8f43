"""Properties of the batch transaction (ProjectionStore.apply), on a real SQLite file database.

For random histories -- valid events, duplicate ids re-published later, invalid payloads, events
the fold raises on -- cut into random batches, with random crashes (the transaction aborted at a
random SQL statement, then a restart from the stored checkpoint), every table ends byte-identical
to folding the whole history in one batch. Re-applying a batch that was applied is refused.

Two projections run side by side in one database: the reference EventCounts (counters, least,
greatest) and Balances, a stateful one that reads its own rows (``reads`` + ``get``): a capped
running balance per member, deleted when the member leaves, and an insert-only ledger.
"""

from __future__ import annotations

import gc
import itertools
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from strategies import any_event
from support.engine import dump

from events import (
    CODEC,
    Event,
    MemberJoined,
    MemberLeft,
    PostCreated,
    ReactionAdded,
    ReplyCreated,
    derived_event_id,
    subject_of,
)
from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes, Key
from projections.counts import EventCounts
from projections.database import create_engine
from projections.store import Fenced, FoldFailed, FoldPolicy, ProjectionStore, RawMessage

POISON = "poison"
"""Events whose actor is this make Balances.fold raise (a projection bug, parked)."""

CAP = 25
COMMUNITIES = ["c1", "c2", "c3"]
MEMBERS = ["m1", "m2", "m3"]
TYPES = [MemberJoined, MemberLeft, PostCreated, ReplyCreated, ReactionAdded]
AMOUNT: dict[type[Event], int] = {MemberJoined: 10, PostCreated: 4, ReplyCreated: 2}

INVALID = [
    (b"\xff\xfe not json at all", "InvalidEvent"),
    (b'{"type": "no.such.type", "id": "7c6f3a52-8f0e-4a55-9a39-2b8d6f3c0a11"}', "UnknownEventType"),
    (
        b'{"type":"member.joined","id":"7c6f3a52-8f0e-4a55-9a39-2b8d6f3c0a12","community":"c1",'
        b'"actor":"m1","occurred_at":"2026-01-01T00:00:00Z"}',  # member missing
        "InvalidEvent",
    ),
    (
        b'{"type":"member.joined","v":9,"id":"7c6f3a52-8f0e-4a55-9a39-2b8d6f3c0a13",'
        b'"community":"c1","actor":"m1","member":"m1","occurred_at":"2026-01-01T00:00:00Z"}',
        "UnsupportedVersion",
    ),
]

T_NS = 1_770_000_000_000_000_000


def member_of(event: Event) -> str:
    member = getattr(event, "member", None)
    return member if isinstance(member, str) else event.actor


class Balances(Projection):
    """A capped running balance per (community, member), read back with ``get``."""

    name = "balances"
    version = 1

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        balances = sa.Table(
            table_name("balances"),
            metadata,
            sa.Column("community", sa.String(64), primary_key=True),
            sa.Column("member", sa.String(64), primary_key=True),
            sa.Column("balance", sa.Integer, nullable=False, default=0),
            sa.Column("events", sa.Integer, nullable=False, default=0),
            sa.Column("last_seq", sa.BigInteger),
        )
        ledger = sa.Table(
            table_name("ledger"),
            metadata,
            sa.Column("seq", sa.BigInteger, primary_key=True),
            sa.Column("community", sa.String(64), nullable=False),
            sa.Column("member", sa.String(64), nullable=False),
            sa.Column("balance", sa.Integer, nullable=False),
        )
        return {"balances": balances, "ledger": ledger}

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        return {"balances": [(d.event.community, member_of(d.event)) for d in batch]}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            event = delivered.event
            if event.actor == POISON:
                raise ValueError(f"cannot fold an event of {POISON}")
            key = (event.community, member_of(event))
            if isinstance(event, MemberLeft):
                changes.delete("balances", key)
                continue
            row = changes.get("balances", key)
            balance = row["balance"] if row is not None else 0
            new = min(balance + AMOUNT.get(type(event), 1), CAP)
            changes.put("balances", key, balance=new)
            changes.add("balances", key, events=1)
            changes.greatest("balances", key, last_seq=delivered.seq)
            if new == CAP and balance < CAP:
                changes.insert(
                    "ledger",
                    {"seq": delivered.seq, "community": key[0], "member": key[1], "balance": new},
                )


class Crash(BaseException):
    """Raised from inside a transaction to abort it, as a process crash would."""


PROJECTIONS: list[Projection] = [EventCounts(), Balances()]


@st.composite
def histories(draw: st.DrawFn) -> list[RawMessage]:
    """A stream: valid events, later copies of some of them, and a few invalid payloads."""
    events = draw(
        st.lists(
            any_event(types=TYPES, communities=COMMUNITIES, members=MEMBERS),
            min_size=1,
            max_size=30,
        )
    )
    for _ in range(draw(st.integers(0, 2))):  # now and then, one the fold raises on
        index = draw(st.integers(0, len(events) - 1))
        poisoned = msgspec.structs.replace(events[index], id=draw(st.uuids()), actor=POISON)
        events.insert(draw(st.integers(0, len(events))), poisoned)
    items: list[tuple[str, bytes]] = [(subject_of(e), CODEC.encode(e)) for e in events]
    for _ in range(draw(st.integers(0, 4))):  # the same event published again, later
        index = draw(st.integers(0, len(items) - 1))
        at = draw(st.integers(index + 1, len(items)))
        items.insert(at, items[index])
    for _ in range(draw(st.integers(0, 3))):
        data, _reason = draw(st.sampled_from(INVALID))
        at = draw(st.integers(0, len(items)))
        items.insert(at, (f"agora.{draw(st.sampled_from(COMMUNITIES))}.junk", data))
    return [
        RawMessage(seq, subject, data, T_NS + seq * 1_000_000)
        for seq, (subject, data) in enumerate(items, start=1)
    ]


class Run:
    """One database, both projections at generation 1; batches applied through the store."""

    def __init__(self, directory: Path, name: str) -> None:
        self.engine = create_engine(f"sqlite:///{directory / name}.db")
        self.stores = [ProjectionStore(self.engine, p) for p in PROJECTIONS]
        for store in self.stores:
            store.ensure(1)

    def feed(
        self, messages: Sequence[RawMessage], sizes: Iterator[int], crash_at: set[int]
    ) -> tuple[int, int]:
        """Apply everything in batches of ``sizes``, crashing at the given statement ordinals
        and resuming from the stored checkpoint; return (crashes, crash points passed)."""
        ordinal = itertools.count(1)
        passed = 0

        def crash(*_: Any) -> None:
            nonlocal passed
            passed = next(ordinal)
            if passed in crash_at:
                raise Crash

        # Crash points: before any SQL statement, or at a COMMIT, before it reaches the database.
        sa.event.listen(self.engine, "before_cursor_execute", crash)
        sa.event.listen(self.engine, "commit", crash)
        crashes = 0
        try:
            for store in self.stores:
                while True:
                    try:
                        checkpoint = store.checkpoint(1)
                        rest = [m for m in messages if m.seq > checkpoint]
                        if not rest:
                            break
                        batch = rest[: next(sizes)]
                        store.apply(1, 0, checkpoint, batch, FoldPolicy.PARK)
                    except Crash:
                        crashes += 1
                        # SQLAlchemy invalidates (closes) a connection interrupted by a
                        # BaseException; collect it now so SQLite lets go of its lock.
                        gc.collect()
        finally:
            sa.event.remove(self.engine, "before_cursor_execute", crash)
            sa.event.remove(self.engine, "commit", crash)
        return crashes, passed

    def dump(self) -> dict[str, list[str]]:
        return dump(self.engine)

    def close(self) -> None:
        self.engine.dispose()


PROPERTIES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


@PROPERTIES
@given(
    messages=histories(),
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=10),
    crash_points=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=6),
)
def test_any_batching_with_crashes_equals_one_batch(
    messages: list[RawMessage], sizes: list[int], crash_points: list[float]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        runs = [Run(directory, name) for name in ("whole", "batched", "crashed")]
        try:
            whole, batched, crashed = runs
            whole.feed(messages, itertools.repeat(len(messages)), set())
            expected = whole.dump()
            _, points = batched.feed(messages, itertools.cycle(sizes), set())
            assert batched.dump() == expected
            # Crash at random statements (or commits) among those the clean run went through.
            crash_at = {1 + int(f * points) for f in crash_points}
            crashes, _ = crashed.feed(messages, itertools.cycle(sizes), crash_at)
            note(f"crashes: {min(crashes, 3)}{'+' if crashes > 3 else ''}")
            assert crashed.dump() == expected

            # What the one-batch run holds is right, too: every message is accounted for.
            for store in whole.stores:
                assert store.checkpoint(1) == messages[-1].seq
            invalid = sum(1 for m in messages if m.data in {d for d, _ in INVALID})
            first_copies: dict[object, Event] = {}
            for m in messages:
                if m.data not in {d for d, _ in INVALID}:
                    event = CODEC.decode(m.data)
                    first_copies.setdefault(event.id, event)
            poison = sum(1 for e in first_copies.values() if e.actor == POISON)
            letters = expected["agora_dead_letters"]
            assert sum("'invalid'" in line for line in letters) == invalid * len(PROJECTIONS)
            assert sum("'fold'" in line for line in letters) == poison
        finally:
            for run in runs:
                run.close()


@PROPERTIES
@given(
    messages=histories(),
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=10),
    data=st.data(),
)
def test_reapplying_an_applied_batch_is_fenced_and_changes_nothing(
    messages: list[RawMessage], sizes: list[int], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), "twice")
        try:
            cuts: list[tuple[int, list[RawMessage]]] = []
            store = run.stores[1]
            size = itertools.cycle(sizes)
            checkpoint = 0
            while checkpoint < messages[-1].seq:
                batch = [m for m in messages if m.seq > checkpoint][: next(size)]
                outcome = store.apply(1, 0, checkpoint, batch, FoldPolicy.PARK)
                cuts.append((checkpoint, batch))
                checkpoint = outcome.last_seq
            run.stores[0].apply(1, 0, 0, messages, FoldPolicy.PARK)
            before = run.dump()
            expected, batch = data.draw(st.sampled_from(cuts))
            for projection_store in run.stores:
                with pytest.raises(Fenced):
                    projection_store.apply(1, 0, expected, batch, FoldPolicy.PARK)
            # A batch that only repeats what the checkpoint covers is a no-op, not a re-fold.
            outcome = store.apply(1, 0, checkpoint, batch, FoldPolicy.PARK)
            assert outcome.applied == 0 and outcome.last_seq == checkpoint
            assert run.dump() == before
        finally:
            run.close()


def test_invalid_payloads_are_dead_letters_with_their_reason(tmp_path: Path) -> None:
    run = Run(tmp_path, "invalid")
    try:
        messages = [
            RawMessage(seq, "agora.c1.junk", data, T_NS + seq)
            for seq, (data, _) in enumerate(INVALID, start=1)
        ]
        outcome = run.stores[0].apply(1, 0, 0, messages)
        assert (outcome.applied, outcome.dead_letters, outcome.last_seq) == (0, len(INVALID), 4)
        with run.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT seq, kind, error_class, raw FROM agora_dead_letters "
                    "WHERE projection = 'event_counts' ORDER BY seq"
                )
            ).all()
        assert [(r.seq, r.kind, r.error_class, bytes(r.raw)) for r in rows] == [
            (seq, "invalid", reason, data) for seq, (data, reason) in enumerate(INVALID, start=1)
        ]
    finally:
        run.close()


class Scores(Projection):
    """Counters with a non-zero default, and an insert-only table the database may refuse."""

    name = "scores"
    version = 1

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        scores = sa.Table(
            table_name("scores"),
            metadata,
            sa.Column("community", sa.String(64), primary_key=True),
            sa.Column("score", sa.Integer, nullable=False, default=100),
            sa.Column("seen", sa.Integer, nullable=False, default=0),
        )
        firsts = sa.Table(
            table_name("firsts"),
            metadata,
            sa.Column("community", sa.String(64), primary_key=True),
            sa.Column("seq", sa.BigInteger, nullable=False),
        )
        return {"scores": scores, "firsts": firsts}

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        return {"scores": [(d.event.community,) for d in batch]}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            key = (delivered.event.community,)
            before = changes.get("scores", key)
            changes.add("scores", key, score=1, seen=1)
            after = changes.get("scores", key)
            assert after is not None
            assert after["score"] == (100 if before is None else before["score"]) + 1
            if delivered.event.actor == POISON:
                # A bug: the community has its first already -- the database refuses the row.
                changes.insert("firsts", {"community": key[0], "seq": delivered.seq})
            elif before is None:
                changes.insert("firsts", {"community": key[0], "seq": delivered.seq})


def joined(seq: int, community: str, actor: str = "m1") -> RawMessage:
    event = MemberJoined(
        id=derived_event_id("scores", str(seq)),
        community=community,
        actor=actor,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        member=actor,
    )
    return RawMessage(seq, subject_of(event), CODEC.encode(event), T_NS + seq)


def rows(engine: sa.Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))]


def test_counters_start_from_the_column_default_in_memory_and_in_the_database(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'scores.db'}")
    store = ProjectionStore(engine, Scores())
    store.ensure(1)
    store.apply(1, 0, 0, [joined(1, "c1"), joined(2, "c1"), joined(3, "c2")])
    store.apply(1, 0, 3, [joined(4, "c1")])
    assert rows(engine, "scores__g1") == [("c1", 103, 3), ("c2", 101, 1)]
    engine.dispose()


@pytest.mark.parametrize("policy", list(FoldPolicy))
def test_a_row_the_database_refuses_is_a_fold_error_not_an_endless_retry(
    tmp_path: Path, policy: FoldPolicy
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'scores.db'}")
    store = ProjectionStore(engine, Scores())
    store.ensure(1)
    batch = [joined(1, "c1"), joined(2, "c2"), joined(3, "c1", POISON), joined(4, "c1")]
    if policy is FoldPolicy.PAUSE:
        with pytest.raises(FoldFailed) as failed:
            store.apply(1, 0, 0, batch, policy)
        assert failed.value.seq == 3 and "IntegrityError" in str(failed.value)
        assert store.checkpoint(1) == 0 and rows(engine, "scores__g1") == []
    else:
        outcome = store.apply(1, 0, 0, batch, policy)
        if policy is FoldPolicy.HOLD:  # c1 is parked at seq 3: its seq 4 is held back
            assert (outcome.applied, outcome.dead_letters, outcome.held) == (2, 1, 1)
            assert rows(engine, "scores__g1") == [("c1", 101, 1), ("c2", 101, 1)]
        else:
            assert (outcome.applied, outcome.dead_letters) == (3, 1)
            # Nothing of the refused event remains, not even its counter; the others are whole.
            assert rows(engine, "scores__g1") == [("c1", 102, 2), ("c2", 101, 1)]
        assert rows(engine, "firsts__g1") == [("c1", 1), ("c2", 2)]
        with engine.connect() as conn:
            letters = conn.execute(
                sa.text("SELECT seq, kind, error_class FROM agora_dead_letters")
            ).all()
        assert [tuple(r) for r in letters] == [(3, "fold", "IntegrityError")]
    engine.dispose()
