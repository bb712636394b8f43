"""The engagement dashboard's queries: read-only SQLAlchemy Core over the engagement tables.

Each function takes a Connection, the community and a range, and optionally an
:class:`EngagementTables` -- by default the stable names (the views over the active generation).
They return frozen dataclasses. Nothing reads the clock: whatever depends on "now" (posts still
without a reply and their age, inactive members) takes ``as_of``. Crisis alerts are evaluated here
from the stored hourly counts, so ``k`` and the minimum signal are query parameters.

Percentiles are nearest-rank: the p-th percentile of n sorted values is the value at rank
``ceil(p * n / 100)`` (the median is the lower middle value); durations are in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.backends import backend_type
from projections.dates import shift_time
from projections.engagement.settings import COHORT_WEEKS, DEFAULTS
from projections.engagement.tables import DAILY_COUNTERS, STABLE, EngagementTables

_HOUR = timedelta(hours=1)


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return at.astimezone(UTC)


def percentile(sorted_values: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile ``p`` (1..100) of ascending ``sorted_values``; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p * len(sorted_values) / 100))
    return sorted_values[rank - 1]


# -- daily activity ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DailyMetrics:
    """One community's day: volumes, growth, DAU/WAU/MAU, stickiness (DAU/MAU)."""

    day: date
    joins: int
    leaves: int
    net_growth: int
    posts: int
    replies: int
    reactions: int
    reactions_removed: int
    reports: int
    active: int
    engaged: int
    new_contributors: int
    wau: int
    mau: int
    stickiness: float | None


def daily_series(
    conn: Connection, community: str, start: date, end: date, t: EngagementTables = STABLE
) -> list[DailyMetrics]:
    """Every day from ``start`` to ``end`` (inclusive), zeros where nothing happened."""
    d = t.daily
    rows = conn.execute(
        sa.select(d.c.day, *(d.c[name] for name in DAILY_COUNTERS)).where(
            d.c.community == community, d.c.day >= start, d.c.day <= end
        )
    ).all()
    found = {row[0]: tuple(int(v) for v in row[1:]) for row in rows}
    out: list[DailyMetrics] = []
    day = start
    zero = (0,) * len(DAILY_COUNTERS)
    while day <= end:
        v = dict(zip(DAILY_COUNTERS, found.get(day, zero), strict=True))
        out.append(
            DailyMetrics(
                day=day,
                net_growth=v["joins"] - v["leaves"],
                stickiness=v["active"] / v["mau"] if v["mau"] else None,
                **v,
            )
        )
        if day == end:  # not one day further: `end` may be the calendar's last day
            break
        day += timedelta(days=1)
    return out


# -- responsiveness ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Responsiveness:
    """Time to first reply and acceptance for the posts created on one day (not deleted)."""

    day: date
    posts: int
    answered: int
    median_first_reply_secs: float | None
    p90_first_reply_secs: float | None
    within_1h: float | None
    within_24h: float | None
    accepted: int
    accepted_rate: float | None
    median_accept_secs: float | None


def responsiveness(
    conn: Connection, community: str, start: date, end: date, t: EngagementTables = STABLE
) -> list[Responsiveness]:
    """Per UTC day of post creation from ``start`` to ``end``; days without posts are left out.

    Shares are of all the day's posts (unanswered ones count as not answered in time). The
    database computes everything, nearest-rank percentiles included (row numbers over each day's
    sorted times), so the answer is a row per day however many posts there are.
    """
    p = t.posts
    since = datetime(start.year, start.month, start.day, tzinfo=UTC)
    until = shift_time(datetime(end.year, end.month, end.day, tzinfo=UTC), timedelta(days=1))
    day = backend_type(conn.dialect.name).utc_day(p.c.created_at)
    base = (
        sa.select(
            day.label("day"),
            p.c.first_reply_secs.label("first"),
            p.c.accepted_secs.label("accept"),
        )
        .where(
            p.c.community == community,
            p.c.created_at >= since,
            p.c.created_at < until,
            p.c.deleted_at.is_(None),
        )
        .cte("base")
    )

    def nearest_ranks(column: sa.ColumnElement[Any], name: str, *pcts: int) -> Any:
        """Per day, the nearest-rank percentiles ``pcts`` of ``column`` (one pass over the day)."""
        ranked = (
            sa.select(
                base.c.day,
                column.label("v"),
                sa.func.row_number().over(partition_by=base.c.day, order_by=column).label("rn"),
                sa.func.count().over(partition_by=base.c.day).label("n"),
            )
            .where(column.is_not(None))
            .subquery()
        )
        # Rank ceil(pct * n / 100) in integers: the same as percentile() above.
        picks = [
            sa.func.max(sa.case((ranked.c.rn == (ranked.c.n * pct + 99) // 100, ranked.c.v))).label(
                f"p{pct}"
            )
            for pct in pcts
        ]
        return sa.select(ranked.c.day, *picks).group_by(ranked.c.day).subquery(name)

    first, accept = base.c.first, base.c.accept
    firsts = nearest_ranks(first, "firsts", 50, 90)
    accepts = nearest_ranks(accept, "accepts", 50)
    totals = (
        sa.select(
            base.c.day,
            sa.func.count().label("posts"),
            sa.func.count(first).label("answered"),
            sa.func.count(sa.case((first <= 3600, 1))).label("h1"),
            sa.func.count(sa.case((first <= 86400, 1))).label("h24"),
            sa.func.count(accept).label("accepted"),
        )
        .group_by(base.c.day)
        .subquery("totals")
    )
    rows = conn.execute(
        sa.select(
            totals,
            firsts.c.p50.label("median_first"),
            firsts.c.p90.label("p90_first"),
            accepts.c.p50.label("median_accept"),
        )
        .select_from(
            totals.outerjoin(firsts, firsts.c.day == totals.c.day).outerjoin(
                accepts, accepts.c.day == totals.c.day
            )
        )
        .order_by(totals.c.day)
    ).all()
    return [
        Responsiveness(
            day=r.day,
            posts=r.posts,
            answered=r.answered,
            median_first_reply_secs=_float(r.median_first),
            p90_first_reply_secs=_float(r.p90_first),
            within_1h=r.h1 / r.posts,
            within_24h=r.h24 / r.posts,
            accepted=r.accepted,
            accepted_rate=r.accepted / r.posts,
            median_accept_secs=_float(r.median_accept),
        )
        for r in rows
    ]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Unanswered:
    """A post without a reply from anyone else as of ``as_of``, and its age then."""

    post: str
    author: str | None
    created_at: datetime
    age_secs: float


@dataclass(frozen=True, slots=True)
class NeedsAttention:
    """How many posts await a first reply as of a time, and the oldest of them."""

    as_of: datetime
    count: int
    oldest: list[Unanswered]


def needs_attention(
    conn: Connection,
    community: str,
    as_of: datetime,
    limit: int = 50,
    t: EngagementTables = STABLE,
) -> NeedsAttention:
    """Posts created by ``as_of``, not deleted by then, with no first reply by then.

    Two index range scans: posts with no first reply at all (a partial index), and posts whose
    first reply came after ``as_of``.
    """
    at = _as_utc(as_of)
    p = t.posts
    base = (
        (p.c.community == community)
        & (p.c.created_at <= at)
        & sa.or_(p.c.deleted_at.is_(None), p.c.deleted_at > at)
    )
    never = base & p.c.first_reply_at.is_(None)
    later = base & (p.c.first_reply_at > at)
    count = 0
    rows: list[Any] = []
    for cond in (never, later):
        # One pass per part: the total rides along each row as a window count.
        found = conn.execute(
            sa.select(p.c.post, p.c.author, p.c.created_at, sa.func.count().over().label("n"))
            .where(cond)
            .order_by(p.c.created_at, p.c.post)
            .limit(limit)
        ).all()
        count += int(found[0].n) if found else 0
        rows.extend(found)
    rows.sort(key=lambda r: (r.created_at, r.post))
    oldest = [
        Unanswered(r.post, r.author, r.created_at, (at - r.created_at).total_seconds())
        for r in rows[:limit]
    ]
    return NeedsAttention(at, count, oldest)


# -- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cohort:
    """A weekly join cohort: its size and, per week after joining, members active that week."""

    cohort: date
    members: int
    active: tuple[int, ...]
    shares: tuple[float | None, ...]


def cohort_retention(
    conn: Connection, community: str, start: date, end: date, t: EngagementTables = STABLE
) -> list[Cohort]:
    """Cohorts whose join week starts from ``start`` to ``end``; weeks 0..12 after the join."""
    sizes = {
        r.cohort: int(r.members)
        for r in conn.execute(
            sa.select(t.cohort_sizes.c.cohort, t.cohort_sizes.c.members).where(
                t.cohort_sizes.c.community == community,
                t.cohort_sizes.c.cohort >= start,
                t.cohort_sizes.c.cohort <= end,
            )
        )
    }
    c = t.cohorts
    cells: dict[date, list[int]] = {}
    for r in conn.execute(
        sa.select(c.c.cohort, c.c.week, c.c.active).where(
            c.c.community == community, c.c.cohort >= start, c.c.cohort <= end
        )
    ):
        cells.setdefault(r.cohort, [0] * (COHORT_WEEKS + 1))[int(r.week)] = int(r.active)
    out: list[Cohort] = []
    for cohort in sorted(set(sizes) | set(cells)):
        size = sizes.get(cohort, 0)
        active = tuple(cells.get(cohort, [0] * (COHORT_WEEKS + 1)))
        shares = tuple(a / size if size else None for a in active)
        out.append(Cohort(cohort, size, active, shares))
    return out


@dataclass(frozen=True, slots=True)
class Inactive:
    """A member with no activity for the horizon: their last activity (or join)."""

    member: str
    joined_at: datetime
    last_active_at: datetime | None


@dataclass(frozen=True, slots=True)
class Churn:
    """Members inactive as of a time, with the longest-inactive first."""

    as_of: datetime
    days: int
    count: int
    members: list[Inactive]


def inactive_members(
    conn: Connection,
    community: str,
    as_of: datetime,
    days: int = DEFAULTS.inactive_days,
    limit: int = 50,
    t: EngagementTables = STABLE,
) -> Churn:
    """Members who joined, have not left, and did nothing in the ``days`` days up to ``as_of``.

    "Did nothing" is read from the member's latest activity (or their join, if they never
    acted): it is exact for an ``as_of`` at or after the newest event, the dashboard's case.
    """
    at = _as_utc(as_of)
    cutoff = shift_time(at, -timedelta(days=days))
    m = t.members
    stayed = sa.or_(m.c.left_at.is_(None), m.c.last_joined_at > m.c.left_at)
    idle = sa.or_(
        m.c.last_active_at <= cutoff,
        m.c.last_active_at.is_(None) & (m.c.joined_at <= cutoff),
    )
    where = (m.c.community == community) & m.c.joined_at.is_not(None) & stayed & idle
    count = int(conn.execute(sa.select(sa.func.count()).select_from(m).where(where)).scalar() or 0)
    rows = conn.execute(
        sa.select(m.c.member, m.c.joined_at, m.c.last_active_at)
        .where(where)
        .order_by(m.c.last_active_at.asc().nulls_first(), m.c.member)
        .limit(limit)
    ).all()
    members = [Inactive(r.member, r.joined_at, r.last_active_at) for r in rows]
    return Churn(at, days, count, members)


# -- members and posts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberProfile:
    """One member's engagement in one community."""

    member: str
    joined_at: datetime | None
    left_at: datetime | None
    first_contribution_at: datetime | None
    last_active_at: datetime | None
    posts: int
    replies: int
    reactions_given: int
    reactions_received: int
    active_days: int


def member_profile(
    conn: Connection, community: str, member: str, t: EngagementTables = STABLE
) -> MemberProfile | None:
    """The member's row, or None if the community has never seen them."""
    m = t.members
    r = conn.execute(sa.select(m).where(m.c.community == community, m.c.member == member)).first()
    if r is None:
        return None
    return MemberProfile(
        member=r.member,
        joined_at=r.joined_at,
        left_at=r.left_at,
        first_contribution_at=r.first_contribution_at,
        last_active_at=r.last_active_at,
        posts=int(r.posts),
        replies=int(r.replies),
        reactions_given=int(r.reactions_given),
        reactions_received=int(r.reactions_received),
        active_days=int(r.active_days),
    )


@dataclass(frozen=True, slots=True)
class PostStats:
    """One post's replies, reactions, first reply and acceptance."""

    post: str
    author: str | None
    created_at: datetime | None
    deleted_at: datetime | None
    replies: int
    reactions: int
    first_reply_at: datetime | None
    first_reply: str | None
    first_reply_secs: float | None
    accepted_at: datetime | None
    accepted_reply: str | None
    accepted_secs: float | None


def post_stats(
    conn: Connection, community: str, post: str, t: EngagementTables = STABLE
) -> PostStats | None:
    """The post's row, or None if the community has never seen it."""
    p = t.posts
    r = conn.execute(sa.select(p).where(p.c.community == community, p.c.post == post)).first()
    if r is None:
        return None
    return PostStats(
        post=r.post,
        author=r.author,
        created_at=r.created_at,
        deleted_at=r.deleted_at,
        replies=int(r.replies),
        reactions=int(r.reactions),
        first_reply_at=r.first_reply_at,
        first_reply=r.first_reply,
        first_reply_secs=r.first_reply_secs,
        accepted_at=r.accepted_at,
        accepted_reply=r.accepted_reply,
        accepted_secs=r.accepted_secs,
    )


# -- crisis signal -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrisisHour:
    """One hour's signal (reports + negative reactions) against its trailing baseline."""

    hour: datetime
    reports: int
    negative: int
    signal: int
    baseline_mean: float
    baseline_std: float
    alert: bool


def _hour(at: datetime) -> datetime:
    return _as_utc(at).replace(minute=0, second=0, microsecond=0)


def crisis_hours(
    conn: Connection,
    community: str,
    start: datetime,
    end: datetime,
    k: float = DEFAULTS.crisis_k,
    min_signal: int = DEFAULTS.crisis_min_signal,
    baseline_hours: int = DEFAULTS.crisis_baseline_hours,
    t: EngagementTables = STABLE,
) -> list[CrisisHour]:
    """Every hour from ``start``'s to ``end``'s (inclusive), with its alert flag.

    An hour alerts when its signal is at least ``min_signal`` and exceeds the mean of the
    ``baseline_hours`` hours before it (hours without events count as zero) by more than ``k``
    population standard deviations. The comparison is exact (integers and a rational ``k``).
    """
    first, last = _hour(start), _hour(end)
    h = t.hourly
    rows = conn.execute(
        sa.select(h.c.hour, h.c.reports, h.c.negative).where(
            h.c.community == community,
            h.c.hour >= shift_time(first, -baseline_hours * _HOUR),
            h.c.hour <= last,
        )
    ).all()
    found = {r.hour: (int(r.reports), int(r.negative)) for r in rows}
    n = baseline_hours
    k2 = Fraction(k) ** 2
    window: list[int] = []
    at = shift_time(first, -n * _HOUR)
    while at < first:
        window.append(sum(found.get(at, (0, 0))))
        at += _HOUR
    window[:0] = [0] * (n - len(window))  # hours before the calendar's first count as zero
    s1 = sum(window)
    s2 = sum(v * v for v in window)
    out: list[CrisisHour] = []
    head = 0
    while at <= last:
        reports, negative = found.get(at, (0, 0))
        signal = reports + negative
        excess = n * signal - s1  # n * (signal - mean)
        spread = n * s2 - s1 * s1  # n^2 * variance
        alert = signal >= min_signal and excess > 0 and excess * excess > k2 * spread
        out.append(
            CrisisHour(
                hour=at,
                reports=reports,
                negative=negative,
                signal=signal,
                baseline_mean=s1 / n,
                baseline_std=math.sqrt(spread) / n,
                alert=alert,
            )
        )
        old = window[head]
        window[head] = signal
        head = (head + 1) % n
        s1 += signal - old
        s2 += signal * signal - old * old
        if at == last:  # not one hour further: `last` may be the calendar's last hour
            break
        at += _HOUR
    return out


def crisis_alerts(
    conn: Connection,
    community: str,
    start: datetime,
    end: datetime,
    k: float = DEFAULTS.crisis_k,
    min_signal: int = DEFAULTS.crisis_min_signal,
    baseline_hours: int = DEFAULTS.crisis_baseline_hours,
    t: EngagementTables = STABLE,
) -> list[CrisisHour]:
    """The alerting hours of :func:`crisis_hours` only."""
    hours = crisis_hours(conn, community, start, end, k, min_signal, baseline_hours, t)
    return [hour for hour in hours if hour.alert]
