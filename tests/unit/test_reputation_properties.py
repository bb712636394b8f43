"""Properties of the reputation projection, through ProjectionStore on SQLite files.

For random histories of valid events (ids from small pools, so the same answer is voted on,
withdrawn, accepted and deleted; event times within a few days, so daily caps bite), folded under
three rule sets side by side -- the two shipped ones and a tight one whose cap, floor and trust
thresholds are reached all the time:

* every member's score is the sum of their ledger, each ledger balance follows from the one
  before, no score is below the floor, and the stored trust level is the one the rules give;
* the projection test kit's properties (any batch boundaries and partitions give byte-identical
  tables, replay equals live, applying twice equals once, reads declared) on these histories.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import any_event

from events import (
    CODEC,
    AnswerAccepted,
    Event,
    ModerationDecided,
    PostDeleted,
    ReactionAdded,
    ReactionRemoved,
    ReplyDeleted,
    derived_event_id,
    subject_of,
)
from projections.database import create_engine
from projections.reputation import (
    DEFAULT,
    STACKEXCHANGE,
    ReactionRule,
    ReputationProjection,
    RuleSet,
    Tables,
    TrustLevel,
    projection_for,
)
from projections.store import FoldPolicy, ProjectionStore, RawMessage
from projections.testing import check_projection

T0 = datetime(2014, 1, 21, tzinfo=UTC)

TIGHT = RuleSet(
    name="tight",
    version=99,
    initial=3,
    floor=2,
    daily_vote_cap=12,
    voter_cost_counts_toward_cap=True,
    reactions={
        "upvote": ReactionRule(post=4, reply=5),
        "downvote": ReactionRule(post=-3, reply=-3, voter_post=-1, voter_reply=-2),
        "helpful": ReactionRule(post=1, reply=2, capped=False),
    },
    positive_reactions=frozenset({"upvote", "like", "helpful"}),
    accepted_answer=7,
    accepted_answer_accepter=3,
    report_upheld={"hide": -1, "remove": -4, "warn": -2, "suspend": -3, "ban": -5},
    reverse_on_delete=True,
    reverse_on_remove=True,
    trust_levels=(
        TrustLevel(level=1, title="one", min_contributions=1),
        TrustLevel(level=2, title="two", min_reputation=6, min_days_active=2),
        TrustLevel(level=3, title="three", min_reactions_received=2, max_reports_upheld=1),
    ),
)
"""A rule set whose limits are reached in short histories."""

PROJECTIONS: list[type[ReputationProjection]] = [
    projection_for(rules) for rules in (DEFAULT, STACKEXCHANGE, TIGHT)
]

POOLS: dict[str, Any] = {
    "communities": ["c1", "c2"],
    "members": ["m1", "m2", "m3", "m4"],
    "posts": ["p1", "p2"],
    "replies": ["r1", "r2", "r3"],
}


# A small, consistent world: who wrote what. Most events act on it, so votes land, are withdrawn,
# hit the cap and the floor, and content is accepted, deleted and removed under them.
WORLD: dict[str, tuple[str, str, str | None]] = {
    "p1": ("post", "m1", None),
    "p2": ("post", "m2", None),
    "r1": ("reply", "m3", "p1"),
    "r2": ("reply", "m1", "p2"),
    "r3": ("reply", "m4", "p1"),
    "r4": ("reply", "m2", "p1"),
}
ACTORS = ["m1", "m2", "m3", "m4", "m5", "system"]


@st.composite
def world_events(draw: st.DrawFn) -> Event:
    """An event about the world's content, its fields consistent with who wrote what."""
    target = draw(st.sampled_from(sorted(WORLD)))
    kind, author, post = WORLD[target]
    common: dict[str, Any] = {
        "id": draw(st.uuids()),
        "community": "c1",
        "actor": draw(st.sampled_from(ACTORS)),
        "occurred_at": T0,
    }
    about = {"target": target, "target_kind": kind, "target_author": author, "post": post}
    roll = draw(st.integers(0, 99))
    action = (
        "add" if roll < 60 else "remove" if roll < 80 else ("accept", "delete", "decide")[roll % 3]
    )
    if action in ("add", "remove"):
        pick = draw(st.integers(0, 99))
        reaction = (
            "upvote" if pick < 55 else "downvote" if pick < 85 else ("helpful", "like")[pick % 2]
        )
        cls = ReactionAdded if action == "add" else ReactionRemoved
        return cls(**common, kind=reaction, **about)
    if action == "accept" and post is not None:
        asker = WORLD[post][1]
        actor = draw(st.sampled_from([asker, asker, common["actor"]]))
        return AnswerAccepted(
            **common | {"actor": actor},
            post=post,
            post_author=asker,
            reply=target,
            reply_author=author,
        )
    if action == "decide":
        decision = draw(st.sampled_from(["hide", "remove", "warn", "dismiss", "suspend", "ban"]))
        until = T0 + timedelta(days=draw(st.integers(0, 4))) if decision == "suspend" else None
        fields = {k: v for k, v in about.items() if k != "post"}
        return ModerationDecided(**common, decision=decision, until=until, **fields)
    if post is None:
        return PostDeleted(**common, post=target, author=author)
    return ReplyDeleted(**common, reply=target, post=post, author=author)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Valid events within two days (mostly about the world), so limits interact.

    Some reactions are withdrawn later on, and a few events of any type, about any ids, are
    mixed in.
    """
    events: list[Event] = draw(st.lists(world_events(), min_size=10, max_size=60))
    added = [i for i, e in enumerate(events) if isinstance(e, ReactionAdded)]
    picked = draw(st.lists(st.sampled_from(added), max_size=8, unique=True)) if added else []
    for i in sorted(picked, reverse=True):  # from the end, so earlier indices hold
        e = events[i]
        assert isinstance(e, ReactionAdded)
        withdrawn = ReactionRemoved(
            **{f: getattr(e, f) for f in e.__struct_fields__ if f != "id"}, id=draw(st.uuids())
        )
        events.insert(draw(st.integers(i + 1, len(events))), withdrawn)
    for noise in draw(st.lists(any_event(**POOLS), max_size=6)):
        events.insert(draw(st.integers(0, len(events))), noise)
    minutes = st.integers(0, 2 * 24 * 60)
    return [
        msgspec.structs.replace(e, occurred_at=T0 + timedelta(minutes=draw(minutes)))
        for e in events
    ]


def messages_of(events: Sequence[Event], start: int = 1) -> list[RawMessage]:
    return [
        RawMessage(seq, subject_of(e), CODEC.encode(e), seq)
        for seq, e in enumerate(events, start=start)
    ]


class Run:
    """One SQLite file with the three reputation projections at generation 1."""

    def __init__(self, directory: Path, name: str) -> None:
        self.engine = create_engine(f"sqlite:///{directory / name}.db")
        self.stores = [ProjectionStore(self.engine, p()) for p in PROJECTIONS]
        for store in self.stores:
            store.ensure(1)

    def feed(self, messages: Sequence[RawMessage], sizes: Iterator[int]) -> list[tuple[int, Any]]:
        """Apply everything in batches of ``sizes``; return the (checkpoint, batch) cuts."""
        cuts: list[tuple[int, Any]] = []
        for store in self.stores:
            checkpoint = store.checkpoint(1)
            while True:
                batch = [m for m in messages if m.seq > checkpoint][: next(sizes)]
                if not batch:
                    break
                # PAUSE: a fold that raises (a row read but not requested...) fails the test.
                outcome = store.apply(1, 0, checkpoint, batch, FoldPolicy.PAUSE)
                cuts.append((checkpoint, batch))
                checkpoint = outcome.last_seq
        return cuts

    def close(self) -> None:
        self.engine.dispose()


def as_utc(value: datetime) -> datetime:
    """SQLite gives naive UTC datetimes back; PostgreSQL aware ones in the session's zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Rung = tuple[int, int, int, int, int, int | None]
"""(reputation, contributions, days active, reactions given, reactions received, most upheld)."""

LADDERS: dict[str, list[Rung]] = {
    "default": [
        (0, 1, 1, 0, 0, None),
        (15, 10, 5, 1, 1, None),
        (500, 50, 50, 30, 20, 5),
        (2000, 200, 100, 100, 100, 2),
    ],
    "stackexchange": [
        (15, 0, 0, 0, 0, None),
        (125, 0, 0, 0, 0, None),
        (2000, 0, 0, 0, 0, None),
        (10000, 0, 0, 0, 0, None),
    ],
    "tight": [(0, 1, 0, 0, 0, None), (6, 0, 2, 0, 0, None), (0, 0, 0, 0, 2, 1)],
}
"""The trust ladders written out (docs/reputation.md and TIGHT above): the oracle for the stored
trust level, independent of projections/reputation/trust.py."""


def expected_trust(ladder: Sequence[Rung], row: Any) -> int:
    """A member row's trust level by ``ladder``, at the event time of the row's last change."""
    until = row["suspended_until"]
    if row["banned"] or (until is not None and as_utc(until) > as_utc(row["updated_at"])):
        return 0
    have = (
        row["score"],
        row["contributions"],
        row["days_active"],
        row["reactions_given"],
        row["reactions_received"],
    )
    level = 0
    for *minimums, most_upheld in ladder:
        if any(h < m for h, m in zip(have, minimums, strict=True)):
            break
        if most_upheld is not None and row["reports_upheld"] > most_upheld:
            break
        level += 1
    return level


def check_invariants(run: Run) -> int:
    """Score = sum(ledger), balances chain, floor, trust level; return the ledger rows seen."""
    seen = 0
    with run.engine.connect() as conn:
        for store in run.stores:
            projection = store.projection
            assert isinstance(projection, ReputationProjection)
            rules = projection.rules
            tables = store.generation(1).tables
            t = Tables.of(projection.name)
            members, ledger = tables[t.members], tables[t.ledger]
            rows = conn.execute(sa.select(members)).mappings().all()
            entries = conn.execute(
                sa.select(ledger).order_by(ledger.c.community, ledger.c.member, ledger.c.seq, "n")
            ).mappings()
            totals: dict[tuple[str, str], int] = {}
            for entry in entries:
                key = (entry["community"], entry["member"])
                total = totals.get(key, 0) + entry["delta"]
                assert entry["balance"] == total, dict(entry)
                assert entry["balance"] >= rules.floor
                assert abs(entry["delta"]) <= abs(entry["requested"])
                totals[key] = total
                seen += 1
            assert set(totals) <= {(r["community"], r["member"]) for r in rows}
            for row in rows:
                key = (row["community"], row["member"])
                assert row["score"] == totals.get(key, 0), key
                assert row["score"] >= rules.floor
                assert row["trust_level"] == expected_trust(LADDERS[rules.name], row), key
    return seen


PROPERTIES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTIES
@given(events=histories())
def test_the_ledger_stays_exact_and_the_trust_level_right(events: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), "one")
        try:
            run.feed(messages_of(events), itertools.repeat(len(events)))
            check_invariants(run)
        finally:
            run.close()


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(events=histories(), sizes=st.lists(st.integers(1, 7), min_size=1, max_size=8))
def test_every_rule_set_passes_the_kit_on_histories_that_reach_the_limits(
    events: list[Event], sizes: list[int]
) -> None:
    """Any batches, partitions, replay, redelivery (projections/testing.py), caps and floors hit."""
    with tempfile.TemporaryDirectory() as tmp:
        for projection in PROJECTIONS:  # three names: they share one database
            check_projection(projection, events, f"sqlite:///{Path(tmp) / 'kit'}.db", sizes=sizes)


def test_the_invariants_hold_on_a_long_busy_history(tmp_path: Path) -> None:
    """One long history drawn once (a smoke test of scale for the properties above)."""
    events = _busy_history()
    run = Run(tmp_path, "busy")
    try:
        run.feed(messages_of(events), itertools.repeat(97))
        assert check_invariants(run) > 100
    finally:
        run.close()


def _busy_history() -> list[Event]:
    """Three hundred reputation events among a few members, deterministic."""
    out: list[Event] = []
    members = [f"m{i}" for i in range(6)]
    for i in range(300):
        voter, author = members[i % 6], members[i % 7 % 6]
        common: dict[str, Any] = {
            "id": derived_event_id("reputation-busy", str(i)),
            "community": "c1",
            "actor": voter,
            "occurred_at": T0 + timedelta(minutes=17 * i),
        }
        target = f"r{i % 7}"
        if i % 11 == 10:
            out.append(ReplyDeleted(**common, reply=target, post="p1", author=author))
        elif i % 13 == 12:
            out.append(
                AnswerAccepted(
                    **common, post="p1", post_author=voter, reply=target, reply_author=author
                )
            )
        else:
            cls = ReactionRemoved if i % 5 == 4 else ReactionAdded
            kind = "downvote" if i % 3 == 0 else "upvote"
            out.append(
                cls(
                    **common,
                    target=target,
                    target_kind="reply",
                    target_author=author,
                    kind=kind,
                    post="p1",
                )
            )
    return out
