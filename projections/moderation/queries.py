"""The moderation dashboard's queries: read-only SQLAlchemy Core over the moderation tables.

Each function takes a Connection and a :class:`ModerationTables` -- by default the stable names
(the views the engine points at the active generation) -- and returns plain frozen dataclasses.
Nothing here writes, and nothing reads the clock: "now" is always a parameter (``as_of``), since
the projection itself only knows event time.

Time to resolution is measured per *round* (first open report to the moderator's decision) and
reported per UTC day of the decision, as nearest-rank percentiles computed in SQL with window
functions (the same statement on SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from events.fields import ReportReason
from projections.api import TableNamer
from projections.dates import shift_time
from projections.moderation.projection import (
    LOG,
    MEMBERS,
    PERIODS,
    QUEUE,
    REPORTERS,
    REPORTS,
    ModerationQueue,
    weight_from_rows,
)
from projections.moderation.scoring import Priority, Weight, period_of, window
from projections.moderation.settings import DEFAULT_SETTINGS, ModerationSettings

PRIORITIES: Final[tuple[Priority, ...]] = ("high", "medium", "low")


class _StableNames(TableNamer):
    """Names every table by its logical name: the stable views of the active generation."""

    def __init__(self) -> None:
        super().__init__(ModerationQueue.name, 0)

    def __call__(self, logical: str) -> str:
        """The logical name itself."""
        return logical


@dataclass(frozen=True, slots=True)
class ModerationTables:
    """The tables (or views) the queries read, with their column types."""

    queue: sa.Table
    reports: sa.Table
    reporters: sa.Table
    periods: sa.Table
    members: sa.Table
    log: sa.Table

    @classmethod
    def _named(cls, namer: TableNamer) -> ModerationTables:
        tables = ModerationQueue().define_tables(sa.MetaData(), namer)
        return cls(
            tables[QUEUE],
            tables[REPORTS],
            tables[REPORTERS],
            tables[PERIODS],
            tables[MEMBERS],
            tables[LOG],
        )

    @classmethod
    def stable(cls) -> ModerationTables:
        """The stable names (``moderation_queue``...): what dashboards read."""
        return cls._named(_StableNames())

    @classmethod
    def generation(cls, number: int) -> ModerationTables:
        """The physical tables of one generation (``moderation_queue__g2``...)."""
        return cls._named(TableNamer(ModerationQueue.name, number))


STABLE: Final = ModerationTables.stable()
"""The stable names; the default of every query."""


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return at.astimezone(UTC)


# -- the queue ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueItem:
    """An open item as the queue shows it; ``score`` in milli-points."""

    target_kind: str
    target: str
    target_author: str
    priority: str
    score: int
    open_reports: int
    top_reason: str
    round: int
    opened_at: datetime
    hidden: bool
    auto_hide_due_at_seq: int | None


def open_items(
    conn: Connection,
    community: str,
    *,
    priority: Priority | None = None,
    limit: int = 50,
    tables: ModerationTables = STABLE,
) -> list[QueueItem]:
    """Pending items of a community, highest score first, then the longest waiting."""
    q = tables.queue
    stmt = (
        sa.select(
            q.c.target_kind,
            q.c.target,
            q.c.target_author,
            q.c.priority,
            q.c.score,
            q.c.open_reports,
            q.c.top_reason,
            q.c["round"],
            q.c.opened_at,
            q.c.hidden,
            q.c.auto_hide_due_at_seq,
        )
        .where(q.c.community == community, q.c.status == "pending")
        .order_by(q.c.score.desc(), q.c.opened_at, q.c.target_kind, q.c.target)
        .limit(limit)
    )
    if priority is not None:
        stmt = stmt.where(q.c.priority == priority)
    return [
        QueueItem(
            r.target_kind,
            r.target,
            r.target_author,
            r.priority,
            int(r.score),
            int(r.open_reports),
            r.top_reason,
            int(r.round),
            r.opened_at,
            bool(r.hidden),
            None if r.auto_hide_due_at_seq is None else int(r.auto_hide_due_at_seq),
        )
        for r in conn.execute(stmt)
    ]


def open_counts(
    conn: Connection, community: str, *, tables: ModerationTables = STABLE
) -> dict[str, int]:
    """Pending items of a community per priority band (every band present, 0 if none)."""
    q = tables.queue
    rows = conn.execute(
        sa.select(q.c.priority, sa.func.count())
        .where(q.c.community == community, q.c.status == "pending")
        .group_by(q.c.priority)
    ).all()
    counts: dict[str, int] = dict.fromkeys(PRIORITIES, 0)
    counts.update({str(p): int(n) for p, n in rows})
    return counts


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One report of an item, with its weight explained (milli-points)."""

    report: str
    reporter: str
    reason: str
    status: str
    round: int
    reported_at: datetime
    standing: int
    accuracy_bonus: int
    reason_bonus: int
    weight: int


def item_reports(
    conn: Connection,
    community: str,
    target_kind: str,
    target: str,
    *,
    tables: ModerationTables = STABLE,
) -> list[ReportLine]:
    """Every report of one item in stream order: why it scores what it scores."""
    r = tables.reports
    rows = conn.execute(
        sa.select(r)
        .where(r.c.community == community, r.c.target_kind == target_kind, r.c.target == target)
        .order_by(r.c.seq)
    )
    return [
        ReportLine(
            row.report,
            row.reporter,
            row.reason,
            row.status,
            int(row.round),
            row.reported_at,
            int(row.standing),
            int(row.accuracy_bonus),
            int(row.reason_bonus),
            int(row.weight),
        )
        for row in rows
    ]


def report_weight_now(
    conn: Connection,
    community: str,
    member: str,
    reason: ReportReason,
    as_of: datetime,
    *,
    settings: ModerationSettings = DEFAULT_SETTINGS,
    tables: ModerationTables = STABLE,
) -> Weight:
    """What a report by ``member`` for ``reason`` would weigh at ``as_of`` (same rule as the fold).

    Shows a reporter's current standing and accuracy bonus, which the reporters table records only
    as of their last report.
    """
    at = _as_utc(as_of)
    m, rep, per = tables.members, tables.reporters, tables.periods
    member_row = conn.execute(
        sa.select(m).where(m.c.community == community, m.c.member == member)
    ).first()
    record = conn.execute(
        sa.select(rep).where(rep.c.community == community, rep.c.reporter == member)
    ).first()
    periods = window(period_of(at, settings.decay_period_days), settings)
    buckets = {
        int(row.period): (int(row.agreed), int(row.disagreed))
        for row in conn.execute(
            sa.select(per.c.period, per.c.agreed, per.c.disagreed).where(
                per.c.community == community,
                per.c.reporter == member,
                per.c.period >= periods.start,
                per.c.period < periods.stop,
            )
        )
    }
    return weight_from_rows(
        None if member_row is None else dict(member_row._mapping),
        None if record is None else dict(record._mapping),
        buckets,
        at,
        reason,
        settings,
    )


# -- team metrics ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayResolution:
    """Rounds a moderator resolved on one UTC day, and how long they waited (seconds)."""

    day: date
    resolved: int
    median_seconds: int
    p90_seconds: int
    sla_breaches: int
    """Rounds that waited longer than the SLA before their decision."""


def resolution_by_day(
    conn: Connection,
    community: str,
    since: date,
    until: date,
    *,
    sla_hours: int | None = None,
    tables: ModerationTables = STABLE,
) -> list[DayResolution]:
    """Per UTC day of decision in [since, until]: rounds resolved, median and p90 wait, breaches.

    Percentiles are nearest-rank (the median of an even count is the lower middle value).
    Rounds ended by the target's deletion (``ignored``) are not resolutions and do not count.
    """
    sla = DEFAULT_SETTINGS.sla_hours if sla_hours is None else sla_hours
    log = tables.log
    ranked = (
        sa.select(
            log.c.day,
            log.c.open_seconds.label("seconds"),
            sa.func.row_number()
            .over(partition_by=log.c.day, order_by=(log.c.open_seconds, log.c.seq))
            .label("rank"),
            sa.func.count().over(partition_by=log.c.day).label("n"),
        )
        .where(
            log.c.community == community,
            log.c.day >= since,
            log.c.day <= until,
            log.c.kind == "decision",
            log.c.reports_resolved > 0,
        )
        .subquery()
    )
    stmt = (
        sa.select(
            ranked.c.day,
            sa.func.max(ranked.c.n),
            sa.func.min(sa.case((ranked.c.rank * 2 >= ranked.c.n, ranked.c.seconds))),
            sa.func.min(sa.case((ranked.c.rank * 10 >= ranked.c.n * 9, ranked.c.seconds))),
            sa.func.sum(sa.case((ranked.c.seconds > sla * 3600, 1), else_=0)),
        )
        .group_by(ranked.c.day)
        .order_by(ranked.c.day)
    )
    return [
        DayResolution(day, int(n), int(median), int(p90), int(breaches))
        for day, n, median, p90, breaches in conn.execute(stmt)
    ]


@dataclass(frozen=True, slots=True)
class Breach:
    """A round that, at ``as_of``, had been pending longer than the SLA."""

    target_kind: str
    target: str
    round: int
    opened_at: datetime
    waited_seconds: int
    """From the round's first report to ``as_of``."""
    still_open: bool
    """Whether the round is still pending now (else it ended after ``as_of``)."""


def sla_breaches(
    conn: Connection,
    community: str,
    as_of: datetime,
    *,
    sla_hours: int | None = None,
    tables: ModerationTables = STABLE,
) -> list[Breach]:
    """Rounds pending at ``as_of`` for longer than the SLA, oldest first.

    A round was pending at ``as_of`` if it opened at least ``sla_hours`` before and either is still
    pending or ended (decision or deletion, from the log) after ``as_of``; so the answer for a
    past ``as_of`` does not change when those items are handled later.
    """
    at = _as_utc(as_of)
    sla = DEFAULT_SETTINGS.sla_hours if sla_hours is None else sla_hours
    cutoff = shift_time(at, -timedelta(hours=sla))
    q, log = tables.queue, tables.log
    open_now = sa.select(
        q.c.target_kind,
        q.c.target,
        q.c["round"],
        q.c.opened_at,
        sa.literal(True).label("still_open"),
    ).where(q.c.community == community, q.c.status == "pending", q.c.opened_at <= cutoff)
    ended_later = sa.select(
        log.c.target_kind,
        log.c.target,
        log.c["round"],
        log.c.opened_at,
        sa.literal(False).label("still_open"),
    ).where(
        log.c.community == community,
        log.c.kind.in_(("decision", "ignore")),
        log.c.reports_resolved > 0,
        log.c.opened_at <= cutoff,
        log.c.occurred_at > at,
    )
    rows: Sequence[Any] = conn.execute(sa.union_all(open_now, ended_later)).all()
    breaches = [
        Breach(
            r.target_kind,
            r.target,
            int(r.round),
            r.opened_at,
            int((at - r.opened_at).total_seconds()),
            bool(r.still_open),
        )
        for r in rows
    ]
    return sorted(breaches, key=lambda b: (b.opened_at, b.target_kind, b.target, b.round))


@dataclass(frozen=True, slots=True)
class AutoHideReview:
    """What moderators decided on rounds in which automation had hidden the content."""

    reviewed: int
    approved: int
    rejected: int

    @property
    def false_positive_rate(self) -> Fraction | None:
        """Share of auto-hidden rounds a moderator rejected; None when none was reviewed."""
        return None if self.reviewed == 0 else Fraction(self.rejected, self.reviewed)


def auto_hide_review(
    conn: Connection,
    community: str,
    since: date,
    until: date,
    *,
    tables: ModerationTables = STABLE,
) -> AutoHideReview:
    """Decisions in [since, until] (UTC days) on rounds auto-hidden by ``system``, by outcome."""
    log = tables.log
    rows = conn.execute(
        sa.select(log.c.outcome, sa.func.count())
        .where(
            log.c.community == community,
            log.c.day >= since,
            log.c.day <= until,
            log.c.kind == "decision",
            log.c.reports_resolved > 0,
            log.c.auto_hidden.is_(True),
        )
        .group_by(log.c.outcome)
    ).all()
    by_outcome = {str(outcome): int(n) for outcome, n in rows}
    approved = by_outcome.get("approved", 0)
    rejected = by_outcome.get("rejected", 0)
    return AutoHideReview(approved + rejected, approved, rejected)


# -- for the moderation service ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemState:
    """What a decision needs to know about one queue item."""

    target_kind: str
    target: str
    target_author: str
    status: str
    round: int
    score: int
    open_reports: int
    hidden: bool


def queue_item(
    conn: Connection,
    community: str,
    target_kind: str,
    target: str,
    *,
    tables: ModerationTables = STABLE,
) -> ItemState | None:
    """The queue item of one reported target, whatever its status; None if nobody reported it."""
    q = tables.queue
    row = conn.execute(
        sa.select(
            q.c.target_kind,
            q.c.target,
            q.c.target_author,
            q.c.status,
            q.c["round"],
            q.c.score,
            q.c.open_reports,
            q.c.hidden,
        ).where(q.c.community == community, q.c.target_kind == target_kind, q.c.target == target)
    ).first()
    if row is None:
        return None
    return ItemState(
        row.target_kind,
        row.target,
        row.target_author,
        row.status,
        int(row.round),
        int(row.score),
        int(row.open_reports),
        bool(row.hidden),
    )


@dataclass(frozen=True, slots=True)
class HideCandidate:
    """An item the auto-hide rule marked whose ``content.hidden`` is not folded yet."""

    community: str
    target_kind: str
    target: str
    target_author: str
    round: int
    crossed_seq: int
    """Stream sequence of the report whose weight crossed ``auto_hide_score``."""
    crossed_at: datetime
    """That report's event time."""
    score: int
    """The item's score when it crossed, milli-points."""


def hide_candidates(
    conn: Connection,
    *,
    crossed_since: datetime | None = None,
    limit: int = 500,
    tables: ModerationTables = STABLE,
) -> list[HideCandidate]:
    """Items marked for hiding in their current round that nothing has hidden since, oldest first.

    A candidate is a pending post or reply whose current round crossed the auto-hide threshold
    (``auto_hide_round = round``), that is not hidden, and for which the log holds no hide after
    the crossing (so a hide then a restore by anyone after the crossing is respected).
    ``crossed_since`` leaves out crossings whose event time is older.
    """
    q, log = tables.queue, tables.log
    hidden_since = (
        sa.select(log.c.seq)
        .where(
            log.c.community == q.c.community,
            log.c.target_kind == q.c.target_kind,
            log.c.target == q.c.target,
            log.c.kind == "hide",
            log.c.seq > q.c.auto_hide_due_at_seq,
        )
        .exists()
    )
    stmt = (
        sa.select(
            q.c.community,
            q.c.target_kind,
            q.c.target,
            q.c.target_author,
            q.c["round"],
            q.c.auto_hide_due_at_seq,
            q.c.auto_hide_due_at,
            q.c.auto_hide_score,
        )
        .where(
            q.c.status == "pending",
            q.c.target_kind != "member",
            q.c.auto_hide_round == q.c["round"],
            q.c.auto_hide_due_at_seq.is_not(None),
            q.c.hidden.is_(False),
            ~hidden_since,
        )
        .order_by(q.c.auto_hide_due_at_seq)
        .limit(limit)
    )
    if crossed_since is not None:
        stmt = stmt.where(q.c.auto_hide_due_at >= _as_utc(crossed_since))
    return [
        HideCandidate(
            r.community,
            r.target_kind,
            r.target,
            r.target_author,
            int(r.round),
            int(r.auto_hide_due_at_seq),
            r.auto_hide_due_at,
            int(r.auto_hide_score),
        )
        for r in conn.execute(stmt)
    ]
