"""The read API's response models: what each endpoint returns, with units in the descriptions.

Times are UTC (ISO 8601), durations are seconds, days are UTC days of event time. ``as_of`` is
the community's latest event time by a member (see docs/dashboard.md), never the wall clock.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

AsOf = datetime | None


class CommunitySummary(BaseModel):
    """A community the projections have seen."""

    community: str
    events: int = Field(description="events counted in event_counts (all types)")
    first_day: date = Field(description="first UTC day with an event")
    last_day: date = Field(description="last UTC day with an event")
    as_of: AsOf = Field(description="latest event time by a member; null if none yet")


class CommunityList(BaseModel):
    """Every community, by id."""

    communities: list[CommunitySummary]


class DayPoint(BaseModel):
    """One UTC day of a community: volumes, growth and active members."""

    day: date
    dau: int = Field(description="distinct members acting that day")
    wau: int = Field(description="distinct members active in the 7 days ending that day")
    mau: int = Field(description="distinct members active in the 30 days ending that day")
    stickiness: float | None = Field(description="DAU / MAU; null when MAU is 0")
    joins: int
    leaves: int
    net_growth: int = Field(description="joins - leaves")
    posts: int
    replies: int
    reactions: int
    reports: int
    new_contributors: int = Field(description="members whose first post or reply is that day")


class RangeTotals(BaseModel):
    """Sums over the overview's days."""

    joins: int
    leaves: int
    net_growth: int
    posts: int
    replies: int
    reactions: int
    reports: int


class Overview(BaseModel):
    """DAU/WAU/MAU, growth, posts and replies per day over the last ``days`` days of data."""

    community: str
    as_of: AsOf
    start: date | None = Field(description="first day of the series; null without data")
    end: date | None = Field(description="last day of the series: the day of as_of")
    latest: DayPoint | None = Field(description="the day of as_of")
    totals: RangeTotals
    series: list[DayPoint]


class QueueEntry(BaseModel):
    """A pending moderation item with its open reports' reasons and its age."""

    target_kind: str = Field(description="post | reply | member")
    target: str
    target_author: str
    priority: str = Field(description="high | medium | low")
    score: int = Field(description="milli-points (1000 = one point)")
    open_reports: int
    top_reason: str = Field(description="most severe open reason")
    reasons: dict[str, int] = Field(description="pending reports by reason")
    round: int = Field(description="1 + times the item was reopened")
    opened_at: datetime = Field(description="earliest open report of the round")
    age_seconds: float | None = Field(description="as_of - opened_at; null without as_of")
    hidden: bool


class PriorityBand(BaseModel):
    """The pending items of one priority, highest score first, then the longest waiting."""

    priority: str
    count: int = Field(description="pending items of this priority (all, not only those listed)")
    items: list[QueueEntry]


class ModerationQueueView(BaseModel):
    """The moderation queue of a community by priority."""

    community: str
    as_of: AsOf
    pending: int = Field(description="pending items, all priorities")
    bands: list[PriorityBand]


class LeaderEntry(BaseModel):
    """A member's standing under one rule set."""

    rank: int = Field(description="1 = highest score; ties ordered by member id")
    member: str
    score: int = Field(description="points: the sum of the member's ledger")
    trust_level: int
    contributions: int
    days_active: int
    reactions_received: int
    reports_upheld: int
    banned: bool
    updated_at: datetime | None = Field(description="event time of the last change")


class Leaderboard(BaseModel):
    """The reputation leaderboard of a community under one rule set."""

    community: str
    rules: str = Field(description="rule set: default | stackexchange")
    members_total: int
    members: list[LeaderEntry]


class LedgerEntry(BaseModel):
    """One change of a member's score."""

    seq: int = Field(description="stream sequence of the event")
    n: int = Field(description="row within the event")
    occurred_at: datetime
    event_type: str
    rule: str
    item_kind: str | None
    item: str | None
    requested: int = Field(description="points the rule gives")
    delta: int = Field(description="points applied after cap and floor")
    balance: int = Field(description="score after this row")


class MemberLedger(BaseModel):
    """A member's standing and their ledger, newest first."""

    community: str
    rules: str
    member: LeaderEntry
    entries_total: int
    entries: list[LedgerEntry]


class UnansweredPost(BaseModel):
    """A post still without a reply from another member as of ``as_of``."""

    post: str
    author: str | None
    created_at: datetime
    age_seconds: float = Field(description="as_of - created_at")


class NeedsAttentionView(BaseModel):
    """Posts awaiting a first reply as of the latest event, oldest first."""

    community: str
    as_of: AsOf
    count: int = Field(description="every such post (not only those listed)")
    posts: list[UnansweredPost]


class ResponsivenessDay(BaseModel):
    """First replies and acceptances of the posts created on one UTC day (not deleted)."""

    day: date
    posts: int
    answered: int
    median_first_reply_seconds: float | None
    p90_first_reply_seconds: float | None
    within_1h: float | None = Field(description="share of the day's posts, 0..1")
    within_24h: float | None = Field(description="share of the day's posts, 0..1")
    accepted: int
    accepted_rate: float | None = Field(description="accepted / posts, 0..1")
    median_accept_seconds: float | None


class ResponsivenessView(BaseModel):
    """Responsiveness per day of post creation over the last ``days`` days of data."""

    community: str
    as_of: AsOf
    start: date | None
    end: date | None
    posts: int
    answered: int
    accepted: int
    days: list[ResponsivenessDay] = Field(description="days without posts are left out")


class CohortRow(BaseModel):
    """A weekly join cohort and its members active in each week after joining."""

    cohort: date = Field(description="Monday of the join week")
    members: int
    active: list[int] = Field(description="index = weeks after the join week (0 = join week)")
    shares: list[float | None] = Field(description="active / members, 0..1")


class RetentionView(BaseModel):
    """The retention grid: join cohorts of the last ``weeks`` weeks of data."""

    community: str
    as_of: AsOf
    weeks_tracked: int = Field(description="weeks after joining per cohort, 0..weeks_tracked")
    cohorts: list[CohortRow]


class CrisisPoint(BaseModel):
    """One hour's crisis signal against its trailing baseline."""

    hour: datetime
    reports: int
    negative: int = Field(description="negative reactions (downvotes)")
    signal: int = Field(description="reports + negative")
    baseline_mean: float
    baseline_std: float
    alert: bool


class CrisisView(BaseModel):
    """Hours over the last ``hours`` of data whose signal spiked above the baseline."""

    community: str
    as_of: AsOf
    start: datetime | None
    end: datetime | None
    k: float = Field(description="alert above mean + k standard deviations")
    min_signal: int
    baseline_hours: int
    alerts: list[CrisisPoint]
    hours: list[CrisisPoint]
