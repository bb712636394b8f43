"""What each dashboard view shows, read from one snapshot of the projection tables.

The JSON API and the HTML pages both call these functions, so a page shows exactly the numbers
its endpoint returns. Each takes a :class:`Snapshot` (one read-only transaction and the stable
names that exist in it) and returns a response model; a projection that has no active
generation yet reads as empty.

"Now" is the community's latest event time by a member (:func:`agora.web.queries.data_as_of`):
ranges end on its day, ages and needs-attention are measured at it. The pages then stay true
for an imported history and for a replay, whatever the wall clock says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agora.web import models, queries
from agora.web.readonly import sqlite_path
from projections.dates import shift_day, shift_time
from projections.engagement import queries as engagement
from projections.engagement.settings import COHORT_WEEKS, DEFAULTS
from projections.engagement.tables import STABLE as ENGAGEMENT
from projections.moderation import queries as moderation
from projections.moderation.queries import STABLE as MODERATION

_EMPTY = sa.create_engine("sqlite://")
"""An empty database, read in place of a SQLite file that does not exist yet (a fresh start)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read-only transaction and the stable names that exist in it."""

    conn: Connection
    names: frozenset[str]

    def has(self, *names: str) -> bool:
        """Whether every one of ``names`` exists."""
        return all(name in self.names for name in names)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Snapshot]:
    """Open a read-only transaction on ``engine``; an absent SQLite file reads as empty."""
    try:
        conn = engine.connect()
    except sa.exc.OperationalError:
        path = sqlite_path(engine.url.render_as_string(hide_password=False))
        if path is None or path.exists():
            raise
        conn = _EMPTY.connect()
    with conn, conn.begin():
        yield Snapshot(conn, queries.available(conn))


def _as_of(snap: Snapshot, community: str) -> datetime | None:
    return queries.data_as_of(snap.conn, community, snap.names)


def community_list(snap: Snapshot) -> models.CommunityList:
    """Every community with its event count, days and "as of"."""
    rows = queries.communities(snap.conn, snap.names)
    return models.CommunityList(
        communities=[
            models.CommunitySummary(
                community=r.community,
                events=r.events,
                first_day=r.first_day,
                last_day=r.last_day,
                as_of=_as_of(snap, r.community),
            )
            for r in rows
        ]
    )


def _day_range(as_of: datetime | None, days: int) -> tuple[date, date] | None:
    if as_of is None:
        return None
    end = as_of.date()
    return shift_day(end, -timedelta(days=days - 1)), end


def _point(d: engagement.DailyMetrics) -> models.DayPoint:
    return models.DayPoint(
        day=d.day,
        dau=d.active,
        wau=d.wau,
        mau=d.mau,
        stickiness=d.stickiness,
        joins=d.joins,
        leaves=d.leaves,
        net_growth=d.net_growth,
        posts=d.posts,
        replies=d.replies,
        reactions=d.reactions,
        reports=d.reports,
        new_contributors=d.new_contributors,
    )


def overview(snap: Snapshot, community: str, days: int) -> models.Overview:
    """The last ``days`` days of data (ending on the day of "as of"), day by day."""
    as_of = _as_of(snap, community)
    span = _day_range(as_of, days) if snap.has(ENGAGEMENT.daily.name) else None
    series = [] if span is None else engagement.daily_series(snap.conn, community, *span)
    points = [_point(d) for d in series]
    totals = models.RangeTotals(
        **{name: sum(getattr(p, name) for p in points) for name in models.RangeTotals.model_fields}
    )
    return models.Overview(
        community=community,
        as_of=as_of,
        start=None if span is None else span[0],
        end=None if span is None else span[1],
        latest=points[-1] if points else None,
        totals=totals,
        series=points,
    )


def moderation_queue(snap: Snapshot, community: str, limit: int) -> models.ModerationQueueView:
    """Pending items per priority (high, medium, low), up to ``limit`` listed per priority."""
    as_of = _as_of(snap, community)
    if not snap.has(MODERATION.queue.name, MODERATION.reports.name):
        bands = [models.PriorityBand(priority=p, count=0, items=[]) for p in moderation.PRIORITIES]
        return models.ModerationQueueView(community=community, as_of=as_of, pending=0, bands=bands)
    counts = moderation.open_counts(snap.conn, community)
    listed = {
        p: moderation.open_items(snap.conn, community, priority=p, limit=limit)
        for p in moderation.PRIORITIES
    }
    reasons = queries.pending_reasons(
        snap.conn,
        community,
        [(i.target_kind, i.target) for items in listed.values() for i in items],
    )
    bands = [
        models.PriorityBand(
            priority=p,
            count=counts.get(p, 0),
            items=[
                models.QueueEntry(
                    target_kind=i.target_kind,
                    target=i.target,
                    target_author=i.target_author,
                    priority=i.priority,
                    score=i.score,
                    open_reports=i.open_reports,
                    top_reason=i.top_reason,
                    reasons=reasons.get((i.target_kind, i.target), {}),
                    round=i.round,
                    opened_at=i.opened_at,
                    age_seconds=None if as_of is None else (as_of - i.opened_at).total_seconds(),
                    hidden=i.hidden,
                )
                for i in listed[p]
            ],
        )
        for p in moderation.PRIORITIES
    ]
    return models.ModerationQueueView(
        community=community, as_of=as_of, pending=sum(counts.values()), bands=bands
    )


def _leader(row: queries.LeaderboardRow) -> models.LeaderEntry:
    return models.LeaderEntry(
        rank=row.rank,
        member=row.member,
        score=row.score,
        trust_level=row.trust_level,
        contributions=row.contributions,
        days_active=row.days_active,
        reactions_received=row.reactions_received,
        reports_upheld=row.reports_upheld,
        banned=row.banned,
        updated_at=row.updated_at,
    )


def leaderboard(
    snap: Snapshot, community: str, rules: str, limit: int, offset: int = 0
) -> models.Leaderboard:
    """Members by score under rule set ``rules``, from rank ``offset + 1``."""
    t = queries.reputation_tables(rules)
    if not snap.has(t.members.name):
        return models.Leaderboard(community=community, rules=rules, members_total=0, members=[])
    rows = queries.leaderboard(snap.conn, t, community, limit=limit, offset=offset)
    return models.Leaderboard(
        community=community,
        rules=rules,
        members_total=queries.member_count(snap.conn, t, community),
        members=[_leader(r) for r in rows],
    )


def member_ledger(
    snap: Snapshot, community: str, member: str, rules: str, limit: int
) -> models.MemberLedger | None:
    """A member's standing and latest ``limit`` ledger rows; None if they have no score."""
    t = queries.reputation_tables(rules)
    if not snap.has(t.members.name, t.ledger.name):
        return None
    standing = queries.member_standing(snap.conn, t, community, member)
    if standing is None:
        return None
    total, rows = queries.ledger(snap.conn, t, community, member, limit=limit)
    return models.MemberLedger(
        community=community,
        rules=rules,
        member=_leader(standing),
        entries_total=total,
        entries=[
            models.LedgerEntry(
                seq=r.seq,
                n=r.n,
                occurred_at=r.occurred_at,
                event_type=r.event_type,
                rule=r.rule,
                item_kind=r.item_kind,
                item=r.item,
                requested=r.requested,
                delta=r.delta,
                balance=r.balance,
            )
            for r in rows
        ],
    )


def needs_attention(snap: Snapshot, community: str, limit: int) -> models.NeedsAttentionView:
    """Posts without a reply from another member as of "as of", oldest first."""
    as_of = _as_of(snap, community)
    if as_of is None or not snap.has(ENGAGEMENT.posts.name):
        return models.NeedsAttentionView(community=community, as_of=as_of, count=0, posts=[])
    found = engagement.needs_attention(snap.conn, community, as_of, limit=limit)
    return models.NeedsAttentionView(
        community=community,
        as_of=as_of,
        count=found.count,
        posts=[
            models.UnansweredPost(
                post=p.post, author=p.author, created_at=p.created_at, age_seconds=p.age_secs
            )
            for p in found.oldest
        ],
    )


def responsiveness(snap: Snapshot, community: str, days: int) -> models.ResponsivenessView:
    """Per day of post creation over the last ``days`` days of data."""
    as_of = _as_of(snap, community)
    span = _day_range(as_of, days) if snap.has(ENGAGEMENT.posts.name) else None
    rows = [] if span is None else engagement.responsiveness(snap.conn, community, *span)
    out = [
        models.ResponsivenessDay(
            day=r.day,
            posts=r.posts,
            answered=r.answered,
            median_first_reply_seconds=r.median_first_reply_secs,
            p90_first_reply_seconds=r.p90_first_reply_secs,
            within_1h=r.within_1h,
            within_24h=r.within_24h,
            accepted=r.accepted,
            accepted_rate=r.accepted_rate,
            median_accept_seconds=r.median_accept_secs,
        )
        for r in rows
    ]
    return models.ResponsivenessView(
        community=community,
        as_of=as_of,
        start=None if span is None else span[0],
        end=None if span is None else span[1],
        posts=sum(d.posts for d in out),
        answered=sum(d.answered for d in out),
        accepted=sum(d.accepted for d in out),
        days=out,
    )


def retention(snap: Snapshot, community: str, weeks: int) -> models.RetentionView:
    """The join cohorts of the ``weeks`` weeks up to the week of "as of"."""
    as_of = _as_of(snap, community)
    cohorts: list[engagement.Cohort] = []
    if as_of is not None and snap.has(ENGAGEMENT.cohorts.name, ENGAGEMENT.cohort_sizes.name):
        last = as_of.date() - timedelta(days=as_of.weekday())
        first = shift_day(last, -timedelta(weeks=weeks - 1))
        cohorts = engagement.cohort_retention(snap.conn, community, first, last)
    return models.RetentionView(
        community=community,
        as_of=as_of,
        weeks_tracked=COHORT_WEEKS,
        cohorts=[
            models.CohortRow(
                cohort=c.cohort, members=c.members, active=list(c.active), shares=list(c.shares)
            )
            for c in cohorts
        ],
    )


def crisis(snap: Snapshot, community: str, hours: int) -> models.CrisisView:
    """The crisis signal of the ``hours`` hours up to "as of", and the hours that alerted."""
    as_of = _as_of(snap, community)
    points: list[models.CrisisPoint] = []
    start = end = None
    if as_of is not None and snap.has(ENGAGEMENT.hourly.name):
        end = as_of.replace(minute=0, second=0, microsecond=0)
        start = shift_time(end, -timedelta(hours=hours - 1))
        points = [
            models.CrisisPoint(
                hour=h.hour,
                reports=h.reports,
                negative=h.negative,
                signal=h.signal,
                baseline_mean=h.baseline_mean,
                baseline_std=h.baseline_std,
                alert=h.alert,
            )
            for h in engagement.crisis_hours(snap.conn, community, start, end)
        ]
    return models.CrisisView(
        community=community,
        as_of=as_of,
        start=start,
        end=end,
        k=DEFAULTS.crisis_k,
        min_signal=DEFAULTS.crisis_min_signal,
        baseline_hours=DEFAULTS.crisis_baseline_hours,
        alerts=[p for p in points if p.alert],
        hours=points,
    )


def held_figures(snap: Snapshot, community: str) -> list[queries.HeldRow]:
    """The projections whose figures for ``community`` are held at a poison event."""
    return queries.held_figures(snap.conn, community, snap.names)
