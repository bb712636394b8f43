"""The engagement projection's tables: names, columns and indexes, for the fold and the queries.

``define_tables`` builds them for one generation (physical names ``engagement_daily__g1``...);
:class:`EngagementTables` gives the queries the same table objects under the stable names (the
views over the active generation) or under one generation's physical names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from projections.api import TableNamer
from projections.columns import UtcDateTime

DAILY: Final = "engagement_daily"
HOURLY: Final = "engagement_hourly"
MEMBERS: Final = "engagement_members"
POSTS: Final = "engagement_posts"
COHORTS: Final = "engagement_cohorts"
COHORT_SIZES: Final = "engagement_cohort_sizes"

TABLES: Final = (DAILY, HOURLY, MEMBERS, POSTS, COHORTS, COHORT_SIZES)
"""Every logical table name of the projection."""

DAILY_COUNTERS: Final = (
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
"""The counter columns of ``engagement_daily``, all maintained by ``add``."""

_ID = sa.String(64)
_TIME = UtcDateTime()


def _counter(name: str, comment: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer, nullable=False, default=0, comment=comment)


def define_tables(metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
    """Daily and hourly counters, members, posts, and the cohort matrix (see docs/metrics.md)."""
    daily = sa.Table(
        table_name(DAILY),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("day", sa.Date, primary_key=True, comment="UTC day of occurred_at"),
        _counter("joins", "member.joined events"),
        _counter("leaves", "member.left events"),
        _counter("posts", "post.created events"),
        _counter("replies", "reply.created events"),
        _counter("reactions", "reaction.added events"),
        _counter("reactions_removed", "reaction.removed events"),
        _counter("reports", "content.reported events"),
        _counter("active", "DAU: distinct members acting that day"),
        _counter("engaged", "distinct members posting, replying or reacting that day"),
        _counter("new_contributors", "members whose first post or reply ever is that day"),
        _counter("wau", "distinct members active in the 7 days ending that day"),
        _counter("mau", "distinct members active in the 30 days ending that day"),
    )
    hourly = sa.Table(
        table_name(HOURLY),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("hour", _TIME, primary_key=True, comment="UTC hour of occurred_at"),
        _counter("reports", "content.reported events"),
        _counter("negative", "reaction.added events of a negative kind"),
    )
    sa.Index(table_name(f"{HOURLY}_hour"), hourly.c.hour)
    members = sa.Table(
        table_name(MEMBERS),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("member", _ID, primary_key=True, comment="member id"),
        sa.Column("joined_at", _TIME, comment="first member.joined"),
        sa.Column("last_joined_at", _TIME, comment="latest member.joined"),
        sa.Column("left_at", _TIME, comment="latest member.left"),
        sa.Column("first_contribution_at", _TIME, comment="first post or reply"),
        sa.Column("last_active_at", _TIME, comment="latest event the member acted in"),
        _counter("posts", "post.created events by the member"),
        _counter("replies", "reply.created events by the member"),
        _counter("reactions_given", "reaction.added events by the member"),
        _counter("reactions_received", "reaction.added events on the member's content"),
        _counter("active_days", "days with any activity"),
        sa.Column("days_base", sa.Date, comment="first active day: bit 0 of the day sets"),
        sa.Column("active_set", sa.Text, nullable=False, default="", comment="hex day bitset"),
        sa.Column("engaged_set", sa.Text, nullable=False, default="", comment="hex day bitset"),
    )
    sa.Index(table_name(f"{MEMBERS}_last_active"), members.c.community, members.c.last_active_at)
    posts = sa.Table(
        table_name(POSTS),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("post", _ID, primary_key=True, comment="post id"),
        sa.Column("author", _ID, comment="actor of the latest post.created"),
        sa.Column("created_at", _TIME, comment="earliest post.created"),
        sa.Column("deleted_at", _TIME, comment="earliest post.deleted"),
        _counter("replies", "live replies (created and not deleted)"),
        _counter("reactions", "reaction.added events on the post itself"),
        sa.Column("first_reply_at", _TIME, comment="earliest live reply by another member"),
        sa.Column("first_reply", _ID, comment="id of that reply"),
        sa.Column("first_reply_secs", sa.Float, comment="first_reply_at - created_at"),
        sa.Column("accepted_at", _TIME, comment="earliest answer.accepted"),
        sa.Column("accepted_reply", _ID, comment="reply of the latest answer.accepted"),
        sa.Column("accepted_secs", sa.Float, comment="accepted_at - created_at"),
        sa.Column("thread", sa.Text, nullable=False, default="", comment="replies, JSON"),
    )
    # Covering indexes: the responsiveness and needs-attention queries read only index entries.
    sa.Index(
        table_name(f"{POSTS}_created"),
        posts.c.community,
        posts.c.created_at,
        posts.c.deleted_at,
        posts.c.first_reply_secs,
        posts.c.accepted_secs,
    )
    sa.Index(
        table_name(f"{POSTS}_first_reply"),
        posts.c.community,
        posts.c.first_reply_at,
        posts.c.created_at,
        posts.c.deleted_at,
    )
    sa.Index(
        table_name(f"{POSTS}_unanswered"),
        posts.c.community,
        posts.c.created_at,
        posts.c.deleted_at,
        postgresql_where=posts.c.first_reply_at.is_(None),
        sqlite_where=posts.c.first_reply_at.is_(None),
    )
    cohorts = sa.Table(
        table_name(COHORTS),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("cohort", sa.Date, primary_key=True, comment="Monday of the join week"),
        sa.Column("week", sa.SmallInteger, primary_key=True, comment="weeks after the join week"),
        _counter("active", "cohort members active in that week"),
    )
    sizes = sa.Table(
        table_name(COHORT_SIZES),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("cohort", sa.Date, primary_key=True, comment="Monday of the join week"),
        _counter("members", "members whose first join is in that week"),
    )
    return {
        DAILY: daily,
        HOURLY: hourly,
        MEMBERS: members,
        POSTS: posts,
        COHORTS: cohorts,
        COHORT_SIZES: sizes,
    }


class _StableNames(TableNamer):
    """Names every table by its logical name: the views of the active generation."""

    def __init__(self) -> None:
        super().__init__("engagement", 0)

    def __call__(self, logical: str) -> str:
        """The logical name itself."""
        return logical


@dataclass(frozen=True, slots=True)
class EngagementTables:
    """The tables (or views) the queries read, with their column types."""

    daily: sa.Table
    hourly: sa.Table
    members: sa.Table
    posts: sa.Table
    cohorts: sa.Table
    cohort_sizes: sa.Table

    @classmethod
    def _named(cls, namer: TableNamer) -> EngagementTables:
        t = define_tables(sa.MetaData(), namer)
        return cls(t[DAILY], t[HOURLY], t[MEMBERS], t[POSTS], t[COHORTS], t[COHORT_SIZES])

    @classmethod
    def stable(cls) -> EngagementTables:
        """The stable names (``engagement_daily``...): what dashboards read."""
        return cls._named(_StableNames())

    @classmethod
    def generation(cls, number: int) -> EngagementTables:
        """The physical tables of one generation (``engagement_daily__g2``...)."""
        return cls._named(TableNamer("engagement", number))


STABLE: Final = EngagementTables.stable()
"""The stable names; the default of every query."""
