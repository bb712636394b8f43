"""An independent oracle for the engagement projection, and the helpers comparing it to tables.

The oracle is a plain-Python fold written from docs/metrics.md, not from the projection: it
collects *sets* (each member's active days, each post's replies) over the whole history and
counts from them at the end -- DAU, WAU and MAU by definition (distinct members with an active
day in the window), cohorts by scanning each member's weeks -- where the projection maintains
every counter incrementally. Agreement on random histories and on the beer dump is the test.

Also here: a few hand-checked histories pinning the oracle itself to the definitions, so a bug
shared by the oracle and the projection cannot pass unnoticed.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from events import (
    CODEC,
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
    derived_event_id,
    subject_of,
)
from projections.database import create_engine
from projections.engagement import Engagement, EngagementTables
from projections.engagement.queries import Responsiveness
from projections.store import FoldPolicy, ProjectionStore, RawMessage

SYSTEM = "system"
NEGATIVE = {"downvote"}
DAILY_COLUMNS = (
    "joins",
    "leaves",
    "posts",
    "replies",
    "reactions",
    "reactions_removed",
    "reports",
    "active",
    "engaged",
    "new_contributors",
    "wau",
    "mau",
)


def utc(value: Any) -> Any:
    """Datetimes as aware UTC (SQLite returns naive ones); anything else unchanged."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


@dataclass
class OMember:
    joined_at: datetime | None = None
    last_joined_at: datetime | None = None
    left_at: datetime | None = None
    first_contribution_at: datetime | None = None
    last_active_at: datetime | None = None
    posts: int = 0
    replies: int = 0
    reactions_given: int = 0
    reactions_received: int = 0
    days: set[date] = field(default_factory=set)
    engaged: set[date] = field(default_factory=set)


@dataclass
class OPost:
    author: str | None = None
    created_at: datetime | None = None
    deleted_at: datetime | None = None
    reactions: int = 0
    accepted_at: datetime | None = None
    accepted_reply: str | None = None
    # reply id -> every creation: (time, stream index, counts as a response)
    created: dict[str, list[tuple[datetime, int, bool]]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)


def _min(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _max(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


@dataclass
class Oracle:
    """What the tables must hold, as plain comparable dicts (all-zero counter rows left out)."""

    daily: dict[tuple[str, date], tuple[int, ...]]
    hourly: dict[tuple[str, datetime], tuple[int, int]]
    cohorts: dict[tuple[str, date, int], int]
    sizes: dict[tuple[str, date], int]
    members: dict[tuple[str, str], dict[str, Any]]
    posts: dict[tuple[str, str], dict[str, Any]]


def oracle(events: Iterable[Event]) -> Oracle:
    """Fold ``events`` (stream order; a repeated event id counts once) the plain way."""
    seen: set[Any] = set()
    volumes: Counter[tuple[str, date, str]] = Counter()
    hourly: Counter[tuple[str, datetime, int]] = Counter()
    members: dict[tuple[str, str], OMember] = defaultdict(OMember)
    posts: dict[tuple[str, str], OPost] = defaultdict(OPost)
    for index, e in enumerate(events):
        if e.id in seen:
            continue
        seen.add(e.id)
        c, at = e.community, e.occurred_at
        hour = at.replace(minute=0, second=0, microsecond=0)
        # An anonymous reaction's actor is a placeholder: nobody was active.
        anonymous = isinstance(e, ReactionAdded | ReactionRemoved) and e.anonymous
        if e.actor != SYSTEM and not anonymous:
            m = members[(c, e.actor)]
            m.days.add(at.date())
            m.last_active_at = _max(m.last_active_at, at)
            if isinstance(e, PostCreated | ReplyCreated | ReactionAdded):
                m.engaged.add(at.date())
            if isinstance(e, PostCreated | ReplyCreated):
                m.first_contribution_at = _min(m.first_contribution_at, at)
        if isinstance(e, MemberJoined):
            volumes[(c, at.date(), "joins")] += 1
            j = members[(c, e.member)]
            j.joined_at = _min(j.joined_at, at)
            j.last_joined_at = _max(j.last_joined_at, at)
        elif isinstance(e, MemberLeft):
            volumes[(c, at.date(), "leaves")] += 1
            if e.member != SYSTEM:
                left = members[(c, e.member)]
                left.left_at = _max(left.left_at, at)
        elif isinstance(e, PostCreated):
            volumes[(c, at.date(), "posts")] += 1
            p = posts[(c, e.post)]
            p.author = e.actor
            p.created_at = _min(p.created_at, at)
            if e.actor != SYSTEM:
                members[(c, e.actor)].posts += 1
        elif isinstance(e, PostDeleted):
            p = posts[(c, e.post)]
            p.deleted_at = _min(p.deleted_at, at)
        elif isinstance(e, ReplyCreated):
            volumes[(c, at.date(), "replies")] += 1
            responds = e.actor not in (SYSTEM, e.post_author)
            posts[(c, e.post)].created.setdefault(e.reply, []).append((at, index, responds))
            if e.actor != SYSTEM:
                members[(c, e.actor)].replies += 1
        elif isinstance(e, ReplyDeleted):
            posts[(c, e.post)].gone.add(e.reply)
        elif isinstance(e, ReactionAdded):
            volumes[(c, at.date(), "reactions")] += 1
            if e.kind in NEGATIVE:
                hourly[(c, hour, 1)] += 1
            if e.actor != SYSTEM and not anonymous:
                members[(c, e.actor)].reactions_given += 1
            if e.target_author != SYSTEM:
                members[(c, e.target_author)].reactions_received += 1
            if e.target_kind == "post":
                posts[(c, e.target)].reactions += 1
        elif isinstance(e, ReactionRemoved):
            volumes[(c, at.date(), "reactions_removed")] += 1
        elif isinstance(e, AnswerAccepted):
            p = posts[(c, e.post)]
            p.accepted_at = _min(p.accepted_at, at)
            p.accepted_reply = e.reply
        elif isinstance(e, ContentReported):
            volumes[(c, at.date(), "reports")] += 1
            hourly[(c, hour, 0)] += 1
    return _tabulate(volumes, hourly, members, posts)


def _tabulate(
    volumes: Counter[tuple[str, date, str]],
    hourly: Counter[tuple[str, datetime, int]],
    members: dict[tuple[str, str], OMember],
    posts: dict[tuple[str, str], OPost],
) -> Oracle:
    daily: Counter[tuple[str, date, str]] = Counter(volumes)
    cohorts: Counter[tuple[str, date, int]] = Counter()
    sizes: Counter[tuple[str, date]] = Counter()
    for (c, _), m in members.items():
        for d in m.days:
            daily[(c, d, "active")] += 1
        for d in m.engaged:
            daily[(c, d, "engaged")] += 1
        if m.first_contribution_at is not None:
            daily[(c, m.first_contribution_at.date(), "new_contributors")] += 1
        for width, column in ((7, "wau"), (30, "mau")):
            covered = {d + timedelta(days=k) for d in m.days for k in range(width)}
            for d in covered:
                daily[(c, d, column)] += 1
        if m.joined_at is not None:
            cohort = monday(m.joined_at.date())
            sizes[(c, cohort)] += 1
            weeks = {monday(d) for d in m.days}
            for w in range(13):
                if cohort + timedelta(weeks=w) in weeks:
                    cohorts[(c, cohort, w)] += 1
    rows: dict[tuple[str, date], list[int]] = {}
    for (c, d, column), n in daily.items():
        rows.setdefault((c, d), [0] * len(DAILY_COLUMNS))[DAILY_COLUMNS.index(column)] += n
    hours: dict[tuple[str, datetime], list[int]] = {}
    for (c, h, which), n in hourly.items():
        hours.setdefault((c, h), [0, 0])[which] += n
    return Oracle(
        daily={k: tuple(v) for k, v in rows.items() if any(v)},
        hourly={k: (v[0], v[1]) for k, v in hours.items() if any(v)},
        cohorts={k: v for k, v in cohorts.items() if v},
        sizes={k: v for k, v in sizes.items() if v},
        members={k: _member_row(m) for k, m in members.items()},
        posts={k: _post_row(p) for k, p in posts.items()},
    )


def _member_row(m: OMember) -> dict[str, Any]:
    return {
        "joined_at": m.joined_at,
        "last_joined_at": m.last_joined_at,
        "left_at": m.left_at,
        "first_contribution_at": m.first_contribution_at,
        "last_active_at": m.last_active_at,
        "posts": m.posts,
        "replies": m.replies,
        "reactions_given": m.reactions_given,
        "reactions_received": m.reactions_received,
        "active_days": len(m.days),
        "days": sorted(m.days),
        "engaged_days": sorted(m.engaged),
    }


def _post_row(p: OPost) -> dict[str, Any]:
    live = {
        reply: min(creations, key=lambda x: (x[0], x[1]))
        for reply, creations in p.created.items()
        if reply not in p.gone
    }
    responses = sorted((at, reply) for reply, (at, _, counts) in live.items() if counts)
    first_at, first = responses[0] if responses else (None, None)
    return {
        "author": p.author,
        "created_at": p.created_at,
        "deleted_at": p.deleted_at,
        "replies": len(live),
        "reactions": p.reactions,
        "first_reply_at": first_at,
        "first_reply": first,
        "first_reply_secs": (
            None
            if first_at is None or p.created_at is None
            else (first_at - p.created_at) / timedelta(seconds=1)
        ),
        "accepted_at": p.accepted_at,
        "accepted_reply": p.accepted_reply,
        "accepted_secs": (
            None
            if p.accepted_at is None or p.created_at is None
            else (p.accepted_at - p.created_at) / timedelta(seconds=1)
        ),
    }


def _bitset_days(text: str, base: Any) -> list[date]:
    """Decode a stored day bitset independently of projections.engagement.days."""
    if not text:
        return []
    bits = bin(int(text, 16))[2:][::-1]
    start = utc(base)
    return [start + timedelta(days=i) for i, b in enumerate(bits) if b == "1"]


def read_tables(conn: sa.Connection, t: EngagementTables) -> Oracle:
    """The projection's tables in the oracle's shape."""
    daily = {
        (r.community, utc(r.day)): tuple(int(getattr(r, col)) for col in DAILY_COLUMNS)
        for r in conn.execute(sa.select(t.daily))
    }
    hourly = {
        (r.community, utc(r.hour)): (int(r.reports), int(r.negative))
        for r in conn.execute(sa.select(t.hourly))
    }
    cohorts = {
        (r.community, utc(r.cohort), int(r.week)): int(r.active)
        for r in conn.execute(sa.select(t.cohorts))
    }
    sizes = {
        (r.community, utc(r.cohort)): int(r.members)
        for r in conn.execute(sa.select(t.cohort_sizes))
    }
    members: dict[tuple[str, str], dict[str, Any]] = {}
    for r in conn.execute(sa.select(t.members)).mappings():
        row = {k: utc(v) for k, v in r.items() if k not in ("community", "member")}
        row["days"] = _bitset_days(row.pop("active_set"), row["days_base"])
        row["engaged_days"] = _bitset_days(row.pop("engaged_set"), row.pop("days_base"))
        members[(r["community"], r["member"])] = row
    posts: dict[tuple[str, str], dict[str, Any]] = {}
    for r in conn.execute(sa.select(t.posts)).mappings():
        row = {k: utc(v) for k, v in r.items() if k not in ("community", "post", "thread")}
        posts[(r["community"], r["post"])] = row
    return Oracle(
        daily={k: v for k, v in daily.items() if any(v)},
        hourly={k: v for k, v in hourly.items() if any(v)},
        cohorts={k: v for k, v in cohorts.items() if v},
        sizes={k: v for k, v in sizes.items() if v},
        members=members,
        posts=posts,
    )


def assert_agrees(found: Oracle, expected: Oracle) -> None:
    """Compare table by table, so a failure names the table and the first differing rows."""
    for name in ("daily", "hourly", "cohorts", "sizes", "members", "posts"):
        got, want = getattr(found, name), getattr(expected, name)
        if got != want:
            keys = sorted(set(got) | set(want), key=repr)
            diff = [(k, got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)]
            raise AssertionError(f"{name}: {len(diff)} rows differ, e.g. {diff[:3]}")


def messages_of(events: Sequence[Event], start: int = 1) -> list[RawMessage]:
    return [
        RawMessage(seq, subject_of(e), CODEC.encode(e), seq)
        for seq, e in enumerate(events, start=start)
    ]


class Run:
    """One database with the engagement projection at generation 1, fed through the store."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.store = ProjectionStore(self.engine, Engagement())
        self.store.ensure(1)
        self.tables = EngagementTables.generation(1)

    def feed(self, messages: Sequence[RawMessage], sizes: Iterator[int]) -> None:
        """Apply every message after the checkpoint in batches of ``sizes``."""
        checkpoint = self.store.checkpoint(1)
        pending = [m for m in messages if m.seq > checkpoint]
        while pending:
            size = next(sizes)
            batch, pending = pending[:size], pending[size:]
            checkpoint = self.store.apply(1, 0, checkpoint, batch, FoldPolicy.PAUSE).last_seq

    def read(self) -> Oracle:
        with self.engine.connect() as conn:
            return read_tables(conn, self.tables)

    def close(self) -> None:
        self.engine.dispose()


# -- the oracle itself, on histories small enough to check by hand ------------------------------

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday


def ev(cls: type[Event], n: int, actor: str, at: datetime, **fields: Any) -> Event:
    return cls(
        id=derived_event_id("oracle", str(n)),
        community="c",
        actor=actor,
        occurred_at=at,
        **fields,
    )


def test_oracle_counts_distinct_members_by_window() -> None:
    day = timedelta(days=1)
    events = [
        ev(MemberJoined, 1, "a", T0, member="a"),
        ev(PostCreated, 2, "a", T0 + 3 * day, post="p", title="t"),
        ev(
            ReactionAdded,
            3,
            "b",
            T0 + 3 * day,
            target="p",
            target_kind="post",
            target_author="a",
            kind="downvote",
        ),
        ev(ReplyCreated, 4, "a", T0 + 40 * day, reply="r", post="p", post_author="a"),
    ]
    o = oracle(events)
    d0 = T0.date()
    assert o.daily[("c", d0)] == (1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1)
    assert o.daily[("c", d0 + 3 * day)] == (0, 0, 1, 0, 1, 0, 0, 2, 2, 1, 2, 2)
    # a's window of day 0 and 3 overlap: WAU of day 6 is a (from day 3) and b.
    assert o.daily[("c", d0 + 6 * day)][-2:] == (2, 2)
    assert o.daily[("c", d0 + 10 * day)][-2:] == (0, 2)
    assert ("c", d0 + 33 * day) not in o.daily  # MAU window of day 3 ends on day 32
    assert o.sizes == {("c", d0): 1}
    assert o.cohorts == {("c", d0, 0): 1, ("c", d0, 5): 1}
    assert o.hourly == {("c", T0 + 3 * day): (0, 1)}
    # a's own reply is no response: the post stays unanswered.
    assert o.posts[("c", "p")]["first_reply_at"] is None
    assert o.posts[("c", "p")]["replies"] == 1


def test_oracle_first_reply_skips_deleted_and_own_replies() -> None:
    m = timedelta(minutes=1)
    events = [
        ev(PostCreated, 1, "a", T0, post="p", title="t"),
        ev(ReplyCreated, 2, "a", T0 + m, reply="r1", post="p", post_author="a"),
        ev(ReplyCreated, 3, "b", T0 + 2 * m, reply="r2", post="p", post_author="a"),
        ev(ReplyCreated, 4, "c", T0 + 3 * m, reply="r3", post="p", post_author="a"),
        ev(ReplyDeleted, 5, "b", T0 + 4 * m, reply="r2", post="p", author="b"),
    ]
    row = oracle(events).posts[("c", "p")]
    assert row["first_reply"] == "r3" and row["first_reply_secs"] == 180.0
    assert row["replies"] == 2


def test_oracle_reorders_late_events_into_their_day() -> None:
    day = timedelta(days=1)
    events = [
        ev(PostCreated, 1, "a", T0 + 9 * day, post="p", title="t"),
        ev(MemberJoined, 2, "a", T0 + 8 * day, member="a"),
        ev(ReplyCreated, 3, "a", T0, reply="r", post="q", post_author="b"),  # late
    ]
    o = oracle(events)
    assert o.members[("c", "a")]["first_contribution_at"] == T0
    assert o.daily[("c", T0.date())][DAILY_COLUMNS.index("new_contributors")] == 1
    assert o.daily[("c", (T0 + 9 * day).date())][DAILY_COLUMNS.index("new_contributors")] == 0
    # Joined in week 1; the late reply (week 0) is before the cohort: not counted.
    assert o.cohorts == {("c", (T0 + 7 * day).date(), 0): 1}


def test_projection_agrees_with_oracle_on_the_hand_checked_histories(tmp_path: Path) -> None:
    day = timedelta(days=1)
    events = [
        ev(PostCreated, 1, "a", T0 + 9 * day, post="p", title="t"),
        ev(MemberJoined, 2, "a", T0 + 8 * day, member="a"),
        ev(ReplyCreated, 3, "b", T0, reply="r", post="p", post_author="a"),
        ev(MemberJoined, 4, "a", T0 - 20 * day, member="a"),
        ev(ReplyDeleted, 5, "b", T0 + day, reply="r", post="p", author="b"),
        ev(ReplyCreated, 6, "c", T0 + 2 * day, reply="r2", post="p", post_author="a"),
    ]
    for sizes in ([len(events)], [1], [2, 1]):
        run = Run(f"sqlite:///{tmp_path / str(sizes)}.db")
        run.feed(messages_of(events), itertools.cycle(sizes))
        assert_agrees(run.read(), oracle(events))
        run.close()


def plain_responsiveness(expected: Oracle, community: str) -> list[Responsiveness]:
    """Responsiveness per UTC day of post creation, from the oracle's posts, by hand."""

    def rank(values: list[float], pct: int) -> float | None:
        ordered = sorted(values)
        return ordered[max(1, math.ceil(pct * len(ordered) / 100)) - 1] if ordered else None

    by_day: dict[date, list[dict[str, Any]]] = {}
    for (c, _), row in expected.posts.items():
        if c == community and row["created_at"] is not None and row["deleted_at"] is None:
            by_day.setdefault(utc(row["created_at"]).date(), []).append(row)
    out = []
    for day, rows in sorted(by_day.items()):
        firsts = [r["first_reply_secs"] for r in rows if r["first_reply_secs"] is not None]
        accepts = [r["accepted_secs"] for r in rows if r["accepted_secs"] is not None]
        out.append(
            Responsiveness(
                day=day,
                posts=len(rows),
                answered=len(firsts),
                median_first_reply_secs=rank(firsts, 50),
                p90_first_reply_secs=rank(firsts, 90),
                within_1h=sum(f <= 3600 for f in firsts) / len(rows),
                within_24h=sum(f <= 86400 for f in firsts) / len(rows),
                accepted=len(accepts),
                accepted_rate=len(accepts) / len(rows),
                median_accept_secs=rank(accepts, 50),
            )
        )
    return out
