"""The dashboard's own read queries: what the projections' query modules do not offer.

Everything here reads the **stable names** (the views over each projection's active
generation) with SQLAlchemy Core, on SQLite and PostgreSQL alike, and writes nothing. The
tables are described by the projections' own ``define_tables`` under their logical names, so
column types (dates, times) are converted exactly as the projections' query modules do.

A view exists only once its projection has an active generation: :func:`available` tells which
do, and the dashboard shows an empty page for a missing one rather than an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.api import Projection, TableNamer
from projections.counts import EventCounts
from projections.engagement.tables import STABLE as ENGAGEMENT
from projections.infra import GenerationState, generations, parked
from projections.moderation.queries import STABLE as MODERATION
from projections.reputation import RULE_SETS, projection_for, projection_name

EVENT_COUNTS: Final = "event_counts"
"""The stable name of the event counts table."""


class StableNames(TableNamer):
    """Names every table by its logical name: the views of the active generation."""

    def __init__(self, projection: str) -> None:
        super().__init__(projection, 0)

    def __call__(self, logical: str) -> str:
        """The logical name itself."""
        return logical


def stable_tables(projection: Projection) -> dict[str, sa.Table]:
    """``projection``'s tables under their stable names, keyed by logical name."""
    return projection.define_tables(sa.MetaData(), StableNames(projection.name))


COUNTS: Final = stable_tables(EventCounts())[EVENT_COUNTS]


def available(conn: Connection) -> frozenset[str]:
    """The stable names (views) and tables that exist in the database now."""
    inspector = sa.inspect(conn)
    return frozenset(inspector.get_view_names()) | frozenset(inspector.get_table_names())


# -- communities and "as of" -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommunityRow:
    """A community the projections have seen: events counted and the UTC days they span."""

    community: str
    events: int
    first_day: date
    last_day: date


def communities(conn: Connection, names: frozenset[str]) -> list[CommunityRow]:
    """Every community in ``event_counts`` (or, without it, in ``engagement_daily``), by name."""
    if EVENT_COUNTS in names:
        c = COUNTS
        stmt = sa.select(
            c.c.community, sa.func.sum(c.c.events), sa.func.min(c.c.day), sa.func.max(c.c.day)
        ).group_by(c.c.community)
    elif ENGAGEMENT.daily.name in names:
        d = ENGAGEMENT.daily
        volume = d.c.joins + d.c.leaves + d.c.posts + d.c.replies + d.c.reactions + d.c.reports
        stmt = sa.select(
            d.c.community, sa.func.sum(volume), sa.func.min(d.c.day), sa.func.max(d.c.day)
        ).group_by(d.c.community)
    else:
        return []
    rows = conn.execute(stmt.order_by(stmt.selected_columns[0])).all()
    return [CommunityRow(r[0], int(r[1] or 0), _day(r[2]), _day(r[3])) for r in rows]


def _day(value: Any) -> date:
    # Aggregates over a view lose the column type on SQLite: min(day) comes back as text.
    return date.fromisoformat(value) if isinstance(value, str) else value


def data_as_of(conn: Connection, community: str, names: frozenset[str]) -> datetime | None:
    """The community's latest event time by a member: ``max(engagement_members.last_active_at)``.

    The dashboard's "now" for everything event-time based (needs attention, the ages in the
    moderation queue, the end of the charts' ranges). None when nothing is projected yet.
    """
    m = ENGAGEMENT.members
    if m.name not in names:
        return None
    value = conn.execute(
        sa.select(sa.func.max(m.c.last_active_at)).where(m.c.community == community)
    ).scalar()
    return value


# -- reputation --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReputationTables:
    """The stable names of one rule set's reputation tables."""

    rules: str
    members: sa.Table
    ledger: sa.Table


@cache
def reputation_tables(rules: str) -> ReputationTables:
    """The reputation tables of rule set ``rules`` (``default``, ``stackexchange``)."""
    projection = projection_for(RULE_SETS[rules])()
    tables = stable_tables(projection)
    prefix = projection_name(RULE_SETS[rules])
    return ReputationTables(rules, tables[f"{prefix}_members"], tables[f"{prefix}_ledger"])


@dataclass(frozen=True, slots=True)
class LeaderboardRow:
    """A member on the leaderboard: rank (1 = highest score), score and trust level."""

    rank: int
    member: str
    score: int
    trust_level: int
    contributions: int
    days_active: int
    reactions_received: int
    reports_upheld: int
    banned: bool
    updated_at: datetime | None


def _leaderboard_row(rank: int, r: Any) -> LeaderboardRow:
    return LeaderboardRow(
        rank,
        r.member,
        int(r.score),
        int(r.trust_level),
        int(r.contributions),
        int(r.days_active),
        int(r.reactions_received),
        int(r.reports_upheld),
        bool(r.banned),
        r.updated_at,
    )


def leaderboard(
    conn: Connection, t: ReputationTables, community: str, *, limit: int = 50, offset: int = 0
) -> list[LeaderboardRow]:
    """Members by score, highest first (ties by member id), ranks counted from 1."""
    m = t.members
    rows = conn.execute(
        sa.select(m)
        .where(m.c.community == community)
        .order_by(m.c.score.desc(), m.c.member)
        .limit(limit)
        .offset(offset)
    )
    return [_leaderboard_row(offset + i, r) for i, r in enumerate(rows, start=1)]


def member_count(conn: Connection, t: ReputationTables, community: str) -> int:
    """Members with a reputation row in the community."""
    m = t.members
    stmt = sa.select(sa.func.count()).select_from(m).where(m.c.community == community)
    return int(conn.execute(stmt).scalar() or 0)


def member_standing(
    conn: Connection, t: ReputationTables, community: str, member: str
) -> LeaderboardRow | None:
    """One member's row with their rank (1 + members with a higher score), or None."""
    m = t.members
    r = conn.execute(sa.select(m).where(m.c.community == community, m.c.member == member)).first()
    if r is None:
        return None
    above = conn.execute(
        sa.select(sa.func.count())
        .select_from(m)
        .where(
            m.c.community == community,
            sa.or_(m.c.score > r.score, sa.and_(m.c.score == r.score, m.c.member < member)),
        )
    ).scalar()
    return _leaderboard_row(int(above or 0) + 1, r)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One change of a member's score: the event, the rule, the points and the balance after."""

    seq: int
    n: int
    occurred_at: datetime
    event_type: str
    rule: str
    item_kind: str | None
    item: str | None
    requested: int
    delta: int
    balance: int


def ledger(
    conn: Connection, t: ReputationTables, community: str, member: str, *, limit: int = 200
) -> tuple[int, list[LedgerRow]]:
    """The member's ledger rows, newest first (at most ``limit``), and how many there are."""
    g = t.ledger
    where = (g.c.community == community) & (g.c.member == member)
    total = int(conn.execute(sa.select(sa.func.count()).select_from(g).where(where)).scalar() or 0)
    rows = conn.execute(
        sa.select(g).where(where).order_by(g.c.seq.desc(), g.c.n.desc()).limit(limit)
    )
    return total, [
        LedgerRow(
            int(r.seq),
            int(r.n),
            r.occurred_at,
            r.event_type,
            r.rule,
            r.item_kind,
            r.item,
            int(r.requested),
            int(r.delta),
            int(r.balance),
        )
        for r in rows
    ]


# -- moderation --------------------------------------------------------------------------------


def pending_reasons(
    conn: Connection, community: str, targets: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, int]]:
    """Per (target kind, target) of ``targets``: its pending reports counted by reason."""
    wanted = set(targets)
    if not wanted:
        return {}
    r = MODERATION.reports
    rows = conn.execute(
        sa.select(r.c.target_kind, r.c.target, r.c.reason, sa.func.count())
        .where(
            r.c.community == community,
            r.c.status == "pending",
            r.c.target.in_(sorted({target for _, target in wanted})),
        )
        .group_by(r.c.target_kind, r.c.target, r.c.reason)
        .order_by(r.c.target_kind, r.c.target, r.c.reason)
    ).all()
    out: dict[tuple[str, str], dict[str, int]] = {}
    for kind, target, reason, count in rows:
        if (kind, target) in wanted:
            out.setdefault((kind, target), {})[str(reason)] = int(count)
    return out


@dataclass(frozen=True, slots=True)
class HeldRow:
    """A projection whose figures for a community stop at a poison event (a parked community)."""

    projection: str
    first_seq: int
    occurred_at: datetime
    error: str


def held_figures(conn: Connection, community: str, names: frozenset[str]) -> list[HeldRow]:
    """The active projections in which ``community`` is parked, by projection name."""
    if parked.name not in names or generations.name not in names:
        return []
    rows = conn.execute(
        sa.select(
            parked.c.projection,
            parked.c.first_seq,
            parked.c.occurred_at,
            parked.c.error_class,
            parked.c.error_message,
        )
        .join(
            generations,
            (generations.c.projection == parked.c.projection)
            & (generations.c.generation == parked.c.generation),
        )
        .where(parked.c.community == community, generations.c.state == GenerationState.ACTIVE)
        .order_by(parked.c.projection)
    ).all()
    return [
        HeldRow(
            r.projection,
            int(r.first_seq),
            r.occurred_at,
            f"{r.error_class}: {r.error_message}",
        )
        for r in rows
    ]
