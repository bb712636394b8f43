"""Properties of the engagement projection on random histories, through ProjectionStore on SQLite.

Histories are valid events of every type with ids from small pools (the same post replied to,
reacted to, accepted and deleted; members joining twice, replying to themselves) and event
times over three months in random order, so most events are late relative to the newest seen.

* the tables agree exactly with the independent oracle (test_engagement_oracle.py), the same
  events published again later included;
* the projection test kit's properties (projections/testing.py) on these histories: any batches
  and partitions give byte-identical tables, replay equals live, applying twice equals once.
"""

from __future__ import annotations

import itertools
import tempfile
from datetime import timedelta
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import any_event

from events import (
    AnswerAccepted,
    ContentReported,
    Event,
    MemberJoined,
    MemberLeft,
    PostCreated,
    PostDeleted,
    ReactionAdded,
    ReactionRemoved,
    ReplyCreated,
    ReplyDeleted,
)
from projections.engagement import Engagement
from projections.testing import check_projection
from unit.test_engagement_oracle import (
    T0,
    Run,
    assert_agrees,
    messages_of,
    oracle,
    plain_responsiveness,
)

POOLS = {
    "communities": ["c1", "c2"],
    "members": ["m1", "m2", "m3", "m4", "m5"],
    "posts": ["p1", "p2", "p3"],
    "replies": ["r1", "r2", "r3", "r4"],
    "reports": ["x1"],
}
COMMON = [
    MemberJoined,
    MemberLeft,
    PostCreated,
    PostDeleted,
    ReplyCreated,
    ReplyCreated,
    ReplyDeleted,
    ReactionAdded,
    ReactionAdded,
    ReactionRemoved,
    AnswerAccepted,
    ContentReported,
]


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Events of every type (the frequent ones more often), at times over 90 days, unordered."""
    common = draw(st.lists(any_event(types=COMMON, **POOLS), min_size=1, max_size=45))
    rare = draw(st.lists(any_event(**POOLS), max_size=5))
    events = common + rare
    order = draw(st.permutations(range(len(events))))
    # Days cluster at the start (same day, same week), sit on window and cohort edges (6/7 days,
    # 29/30 days, week 12 and 13), and spread over 95 days.
    edges = st.sampled_from([0, 1, 6, 7, 8, 29, 30, 31, 84, 90, 91, 95])
    day = st.one_of(st.integers(0, 3), edges, st.integers(0, 95))
    minute = st.integers(0, 24 * 60 - 1)
    return [
        msgspec.structs.replace(
            events[i],
            occurred_at=T0 + timedelta(days=draw(day), minutes=draw(minute), microseconds=i),
        )
        for i in order
    ]


def _sizes() -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, 9), min_size=1, max_size=6)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(events=histories(), sizes=_sizes(), again=st.data())
def test_tables_agree_with_the_oracle(
    events: list[Event], sizes: list[int], again: st.DataObject
) -> None:
    """Folded live in random batches, with some events published again later."""
    repeated = again.draw(st.lists(st.sampled_from(events), max_size=10))
    messages = messages_of(events) + messages_of(repeated, start=len(events) + 1)
    with tempfile.TemporaryDirectory() as directory:
        live = Run(f"sqlite:///{Path(directory) / 'live'}.db")
        try:
            live.feed(messages, itertools.cycle(sizes))
            assert_agrees(live.read(), oracle(events))
        finally:
            live.close()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(events=histories(), sizes=_sizes())
def test_engagement_passes_the_kit_on_late_and_colliding_events(
    events: list[Event], sizes: list[int]
) -> None:
    """Any batches, partitions, replay, redelivery (projections/testing.py) on these histories."""
    with tempfile.TemporaryDirectory() as directory:
        check_projection(Engagement, events, f"sqlite:///{Path(directory) / 'kit'}.db", sizes=sizes)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories(), sizes=_sizes())
def test_responsiveness_query_equals_a_plain_fold(events: list[Event], sizes: list[int]) -> None:
    """The SQL percentiles and shares per day equal the oracle's, computed by hand."""
    from datetime import date

    from projections.engagement import queries

    expected = oracle(events)
    with tempfile.TemporaryDirectory() as directory:
        run = Run(f"sqlite:///{Path(directory) / 'run'}.db")
        try:
            run.feed(messages_of(events), itertools.cycle(sizes))
            with run.engine.connect() as conn:
                for community in POOLS["communities"]:
                    found = queries.responsiveness(
                        conn, community, date(2000, 1, 1), date(2100, 1, 1), t=run.tables
                    )
                    assert found == plain_responsiveness(expected, community)
        finally:
            run.close()
