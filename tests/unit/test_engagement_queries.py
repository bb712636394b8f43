"""The engagement dashboard queries on small histories whose answers are worked out by hand,
read through the stable names (the views of the active generation), and the crisis alert rule
against a plain statistics oracle."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    AnswerAccepted,
    ContentReported,
    Event,
    MemberJoined,
    MemberLeft,
    PostCreated,
    PostDeleted,
    ReactionAdded,
    ReplyCreated,
    ReplyDeleted,
)
from projections.database import create_engine
from projections.engagement import EngagementTables, queries
from projections.engagement.tables import define_tables
from unit.test_engagement_oracle import T0, Run, ev, messages_of

H = timedelta(hours=1)
DAY = timedelta(days=1)
D0 = T0.date()


def post(n: int, author: str, at: datetime, pid: str) -> Event:
    return ev(PostCreated, n, author, at, post=pid, title="t")


def reply(n: int, actor: str, at: datetime, rid: str, pid: str, to: str) -> Event:
    return ev(ReplyCreated, n, actor, at, reply=rid, post=pid, post_author=to)


HISTORY: list[Event] = [
    ev(MemberJoined, 1, "a", T0, member="a"),
    ev(MemberJoined, 2, "b", T0 + H, member="b"),
    ev(MemberJoined, 3, "c", T0 + 7 * DAY, member="c"),
    ev(MemberLeft, 4, "c", T0 + 8 * DAY, member="c"),
    post(10, "a", T0 + H, "p1"),  # first reply after 30 min
    reply(11, "b", T0 + 90 * timedelta(minutes=1), "r1", "p1", "a"),
    post(12, "a", T0 + 2 * H, "p2"),  # own reply only, then b after 2 h
    reply(13, "a", T0 + 3 * H, "r2", "p2", "a"),
    reply(14, "b", T0 + 4 * H, "r3", "p2", "a"),
    post(15, "a", T0 + 3 * H, "p3"),  # b's reply deleted: unanswered
    reply(16, "b", T0 + 5 * H, "r4", "p3", "a"),
    ev(ReplyDeleted, 17, "b", T0 + 6 * H, reply="r4", post="p3", author="b"),
    post(18, "b", T0 + 4 * H, "p4"),  # answered after 2 days, accepted after 3
    reply(19, "a", T0 + 2 * DAY + 4 * H, "r5", "p4", "b"),
    ev(
        AnswerAccepted,
        20,
        "b",
        T0 + 3 * DAY + 4 * H,
        post="p4",
        post_author="b",
        reply="r5",
        reply_author="a",
    ),
    post(21, "b", T0 + 5 * H, "p5"),  # deleted: out of the statistics
    ev(PostDeleted, 22, "b", T0 + 6 * H, post="p5", author="b"),
    ev(
        ReactionAdded,
        23,
        "b",
        T0 + 7 * H,
        target="p1",
        target_kind="post",
        target_author="a",
        kind="downvote",
    ),
    ev(
        ContentReported,
        24,
        "b",
        T0 + 7 * H,
        report="x",
        target="p1",
        target_kind="post",
        target_author="a",
        reason="spam",
    ),
]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sa.Connection]:
    run = Run(f"sqlite:///{tmp_path / 'q'}.db")
    run.feed(messages_of(HISTORY), itertools.repeat(5))
    run.store.activate(1)
    with run.engine.connect() as connection:
        yield connection
    run.close()


def test_daily_series_fills_days_and_derives_growth_and_stickiness(conn: sa.Connection) -> None:
    series = queries.daily_series(conn, "c", D0, D0 + 9 * DAY)
    assert [d.day for d in series] == [D0 + i * DAY for i in range(10)]
    first = series[0]
    assert (first.joins, first.posts, first.replies, first.reactions, first.reports) == (
        2,
        5,
        4,
        1,
        1,
    )
    assert (first.active, first.engaged, first.new_contributors) == (2, 2, 2)
    assert first.stickiness == 1.0
    assert series[1].active == 0 and series[1].wau == 2 and series[1].stickiness == 0.0
    # a was last active on day 2 (reply), b on day 3 (acceptance), c on days 7 and 8.
    assert series[7].joins == 1 and series[7].wau == 3
    assert series[9].wau == 2 and series[9].mau == 3
    assert series[8].net_growth == -1
    assert queries.daily_series(conn, "elsewhere", D0, D0)[0].active == 0


def test_responsiveness_per_day_of_post_creation(conn: sa.Connection) -> None:
    (day,) = queries.responsiveness(conn, "c", D0, D0 + 9 * DAY)
    assert day.day == D0 and day.posts == 4 and day.answered == 3  # p5 deleted, p3 unanswered
    # First replies: 1800 s (p1), 7200 s (p2), 2 days (p4): nearest-rank median and p90.
    assert day.median_first_reply_secs == 7200.0
    assert day.p90_first_reply_secs == 2 * 86400.0
    assert day.within_1h == 0.25 and day.within_24h == 0.5
    assert day.accepted == 1 and day.accepted_rate == 0.25
    assert day.median_accept_secs == 3 * 86400.0


def test_needs_attention_as_of(conn: sa.Connection) -> None:
    early = queries.needs_attention(conn, "c", T0 + 5 * H + timedelta(minutes=30))
    # At 14:30: p1 answered, p2 answered at 13:00, p3 (its reply not yet deleted... but deleted
    # replies never count), p4 waits, p5 not yet deleted.
    assert [u.post for u in early.oldest] == ["p3", "p4", "p5"] and early.count == 3
    assert early.oldest[0].age_secs == 2.5 * 3600
    late = queries.needs_attention(conn, "c", T0 + 10 * DAY, limit=1)
    assert late.count == 1 and [u.post for u in late.oldest] == ["p3"]
    with pytest.raises(ValueError):
        queries.needs_attention(conn, "c", datetime(2026, 3, 10))


def test_cohort_retention(conn: sa.Connection) -> None:
    cohorts = queries.cohort_retention(conn, "c", D0 - 7 * DAY, D0 + 14 * DAY)
    assert [(c.cohort, c.members) for c in cohorts] == [(D0, 2), (D0 + 7 * DAY, 1)]
    assert cohorts[0].active[:2] == (2, 0) and cohorts[0].shares[0] == 1.0
    assert cohorts[1].active[0] == 1 and len(cohorts[1].active) == 13


def test_inactive_members_skip_those_who_left(conn: sa.Connection) -> None:
    churn = queries.inactive_members(conn, "c", T0 + 40 * DAY, days=30)
    assert churn.count == 2 and [m.member for m in churn.members] == ["a", "b"]
    assert queries.inactive_members(conn, "c", T0 + 20 * DAY, days=30).count == 0


def test_member_and_post(conn: sa.Connection) -> None:
    a = queries.member_profile(conn, "c", "a")
    assert a is not None
    assert (a.posts, a.replies, a.reactions_given, a.reactions_received) == (3, 2, 0, 1)
    assert a.first_contribution_at == T0 + H and a.active_days == 2
    assert queries.member_profile(conn, "c", "nobody") is None
    p2 = queries.post_stats(conn, "c", "p2")
    assert p2 is not None and p2.first_reply == "r3" and p2.first_reply_secs == 7200.0
    assert p2.replies == 2
    p4 = queries.post_stats(conn, "c", "p4")
    assert p4 is not None and p4.accepted_reply == "r5" and p4.accepted_secs == 3 * 86400.0
    assert queries.post_stats(conn, "c", "nope") is None


def test_crisis_hour_alerts_against_an_empty_baseline(conn: sa.Connection) -> None:
    hours = queries.crisis_hours(conn, "c", T0, T0 + 8 * H, min_signal=2)
    alert = [h for h in hours if h.alert]
    assert [(h.hour, h.reports, h.negative) for h in alert] == [(T0 + 7 * H, 1, 1)]
    assert queries.crisis_alerts(conn, "c", T0, T0 + 8 * H, min_signal=3) == []


# -- the alert rule against plain statistics ---------------------------------------------------


def naive_alerts(
    counts: dict[datetime, int], start: datetime, hours: int, k: float, low: int, n: int
) -> list[bool]:
    out = []
    for i in range(hours):
        at = start + i * H
        window = [Fraction(counts.get(at - (j + 1) * H, 0)) for j in range(n)]
        mean = sum(window) / n
        var = sum((x - mean) ** 2 for x in window) / n
        s = counts.get(at, 0)
        out.append(s >= low and s > mean and (s - mean) ** 2 > Fraction(k) ** 2 * var)
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.integers(0, 60), st.integers(0, 6), max_size=40),
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]),
    st.integers(0, 3),
    st.integers(1, 24),
)
def test_crisis_rule_matches_plain_statistics(
    signal: dict[int, int], k: float, low: int, n: int
) -> None:
    engine = create_engine("sqlite://")
    tables = define_tables(sa.MetaData(), lambda name: name)  # type: ignore[arg-type]
    hourly = tables["engagement_hourly"]
    counts = {T0 + h * H: v for h, v in signal.items()}
    with engine.begin() as c:
        hourly.create(c)
        for at, v in counts.items():
            c.execute(
                hourly.insert().values(community="c", hour=at, reports=v // 2, negative=v - v // 2)
            )
        got = queries.crisis_hours(
            c, "c", T0 + 30 * H, T0 + 60 * H, k, low, n, EngagementTables.stable()
        )
    assert [h.hour for h in got] == [T0 + (30 + i) * H for i in range(31)]
    assert [h.signal for h in got] == [counts.get(h.hour, 0) for h in got]
    assert [h.alert for h in got] == naive_alerts(counts, T0 + 30 * H, 31, k, low, n)
    assert all(math.isfinite(h.baseline_std) for h in got)


def test_percentile_is_nearest_rank() -> None:
    assert queries.percentile([], 50) is None
    assert queries.percentile([1.0, 2.0], 50) == 1.0
    assert queries.percentile([float(i) for i in range(1, 11)], 90) == 9.0
    assert queries.percentile([5.0], 90) == 5.0


def test_dates_are_utc_days() -> None:
    assert datetime(2026, 3, 2, 23, 59, tzinfo=UTC).date() == date(2026, 3, 2)


def test_responsiveness_percentiles_are_nearest_rank(tmp_path: Path) -> None:
    """Four answered posts (1 to 4 h): the median is the 2nd value, p90 the 4th, not between."""
    events: list[Event] = []
    for i in range(4):
        at = T0 + i * timedelta(minutes=1)
        events.append(post(100 + i, "a", at, f"q{i}"))
        events.append(reply(200 + i, "b", at + (i + 1) * H, f"s{i}", f"q{i}", "a"))
    run = Run(f"sqlite:///{tmp_path / 'ranks'}.db")
    try:
        run.feed(messages_of(events), itertools.repeat(3))
        with run.engine.connect() as connection:
            (day,) = queries.responsiveness(connection, "c", D0, D0, t=run.tables)
    finally:
        run.close()
    assert (day.posts, day.answered) == (4, 4)
    assert (day.median_first_reply_secs, day.p90_first_reply_secs) == (2 * 3600.0, 4 * 3600.0)
    assert (day.within_1h, day.within_24h) == (0.25, 1.0)
