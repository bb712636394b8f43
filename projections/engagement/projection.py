"""The engagement projection: community-health counters folded from the event log alone.

Per community it keeps daily counters (volumes, DAU, engaged members, new contributors, WAU and
MAU), hourly crisis counters (reports, negative reactions), one row per member (join, first
contribution, last activity, contribution counts, and the member's active days as a bitset), one
row per post (replies, reactions, first reply, acceptance) and the weekly join-cohort matrix.
Definitions are in docs/metrics.md.

Distinct counts are maintained exactly and incrementally: when a member gets a *new* active day
``x`` (whatever order events arrive in), the fold reads the member's other active days from the
member's own row and adds the member to DAU of ``x``, to WAU/MAU of the days whose window holds
``x`` and no other active day of the member, and to the cohort cell of ``x``'s week if the member
had no other active day that week. Nothing depends on the wall clock, and every counter is a sum
of per-event increments, so any batch boundaries give the same tables.

Each batch is folded on plain Python state (one object per member and post read, one counter row
per day, hour and cohort cell touched) and written once at the end: one upsert per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, assert_never, cast

import msgspec
import sqlalchemy as sa

from events.catalogue import (
    AnswerAccepted,
    AnyEvent,
    ContentHidden,
    ContentReported,
    ContentRestored,
    MemberJoined,
    MemberLeft,
    ModerationDecided,
    PostCreated,
    PostDeleted,
    PostEdited,
    ReactionAdded,
    ReactionRemoved,
    ReplyCreated,
    ReplyDeleted,
    acting_member,
)
from events.limits import SYSTEM_ACTOR
from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes, Key
from projections.dates import shift_day
from projections.engagement import days
from projections.engagement.settings import (
    COHORT_WEEKS,
    FOLD_REVISION,
    MAU_DAYS,
    NEGATIVE_REACTIONS,
    WAU_DAYS,
)
from projections.engagement.tables import (
    COHORT_SIZES,
    COHORTS,
    DAILY,
    DAILY_COUNTERS,
    HOURLY,
    MEMBERS,
    POSTS,
    define_tables,
)

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_DAY: Final = timedelta(days=1)
_WEEK: Final = timedelta(weeks=1)
_COLUMN: Final = {name: i for i, name in enumerate(DAILY_COUNTERS)}


def micros(at: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact)."""
    return (at - EPOCH) // _US


def from_micros(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=us)


def week_of(day: date) -> date:
    """The Monday starting the ISO week of ``day``: a cohort's key."""
    return day - timedelta(days=day.weekday())


class Thread(msgspec.Struct, frozen=True):
    """A post's replies as stored in ``engagement_posts.thread`` (JSON).

    ``live``: reply id -> [microseconds of creation, 1 if it counts as a response (by someone
    other than the post's author and not ``system``), else 0]; ``gone``: deleted reply ids.
    """

    live: dict[str, tuple[int, int]] = {}
    gone: list[str] = []


_THREAD = msgspec.json.Decoder(Thread)


class _Member:
    """A member's row while a batch is folded."""

    __slots__ = (
        "active",
        "active_days",
        "base",
        "engaged",
        "first_contribution_at",
        "joined_at",
        "last_active_at",
        "last_joined_at",
        "left_at",
        "posts",
        "reactions_given",
        "reactions_received",
        "replies",
    )

    def __init__(self, row: Mapping[str, Any] | None) -> None:
        r: Mapping[str, Any] = row or {}
        self.joined_at: datetime | None = r.get("joined_at")
        self.last_joined_at: datetime | None = r.get("last_joined_at")
        self.left_at: datetime | None = r.get("left_at")
        self.first_contribution_at: datetime | None = r.get("first_contribution_at")
        self.last_active_at: datetime | None = r.get("last_active_at")
        self.posts: int = r.get("posts") or 0
        self.replies: int = r.get("replies") or 0
        self.reactions_given: int = r.get("reactions_given") or 0
        self.reactions_received: int = r.get("reactions_received") or 0
        self.active_days: int = r.get("active_days") or 0
        self.base: date | None = r.get("days_base")
        self.active = days.from_hex(r.get("active_set"))
        self.engaged = days.from_hex(r.get("engaged_set"))

    def columns(self) -> dict[str, Any]:
        """The row's columns (all but the key), as written back."""
        return {
            "joined_at": self.joined_at,
            "last_joined_at": self.last_joined_at,
            "left_at": self.left_at,
            "first_contribution_at": self.first_contribution_at,
            "last_active_at": self.last_active_at,
            "posts": self.posts,
            "replies": self.replies,
            "reactions_given": self.reactions_given,
            "reactions_received": self.reactions_received,
            "active_days": self.active_days,
            "days_base": self.base,
            "active_set": days.hex_of(self.active),
            "engaged_set": days.hex_of(self.engaged),
        }

    def active_in_week(self, monday: date) -> bool:
        """Whether the member was active on any day of the week starting ``monday``."""
        if self.base is None:
            return False
        return days.has_any(self.active, self.base, monday, shift_day(monday, _WEEK - _DAY))


class _Post:
    """A post's row while a batch is folded."""

    __slots__ = (
        "accepted_at",
        "accepted_reply",
        "author",
        "created_at",
        "deleted_at",
        "gone",
        "live",
        "reactions",
    )

    def __init__(self, row: Mapping[str, Any] | None) -> None:
        r: Mapping[str, Any] = row or {}
        self.author: str | None = r.get("author")
        self.created_at: datetime | None = r.get("created_at")
        self.deleted_at: datetime | None = r.get("deleted_at")
        self.reactions: int = r.get("reactions") or 0
        self.accepted_at: datetime | None = r.get("accepted_at")
        self.accepted_reply: str | None = r.get("accepted_reply")
        thread = _THREAD.decode(r["thread"]) if r.get("thread") else Thread()
        self.live: dict[str, tuple[int, int]] = {k: (v[0], v[1]) for k, v in thread.live.items()}
        self.gone: set[str] = set(thread.gone)

    def columns(self) -> dict[str, Any]:
        """The row's columns (all but the key), as written back."""
        responses = [(us, reply) for reply, (us, counts) in self.live.items() if counts]
        first = min(responses) if responses else None
        first_at = None if first is None else from_micros(first[0])
        created = None if self.created_at is None else micros(self.created_at)
        thread = Thread(live={k: self.live[k] for k in sorted(self.live)}, gone=sorted(self.gone))
        return {
            "author": self.author,
            "created_at": self.created_at,
            "deleted_at": self.deleted_at,
            "replies": len(self.live),
            "reactions": self.reactions,
            "first_reply_at": first_at,
            "first_reply": None if first is None else first[1],
            "first_reply_secs": (
                None if first is None or created is None else (first[0] - created) / 1e6
            ),
            "accepted_at": self.accepted_at,
            "accepted_reply": self.accepted_reply,
            "accepted_secs": (
                None
                if self.accepted_at is None or created is None
                else (micros(self.accepted_at) - created) / 1e6
            ),
            "thread": msgspec.json.encode(thread).decode(),
        }


class Engagement(Projection):
    """Engagement and community health per community (tables ``engagement_*``)."""

    name = "engagement"
    version = FOLD_REVISION

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        """See :func:`projections.engagement.tables.define_tables`."""
        return define_tables(metadata, table_name)

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        """The member and post rows the batch's events name (at most three keys per event)."""
        members: list[Key] = []
        posts: list[Key] = []
        for delivered in batch:
            _keys(cast(AnyEvent, delivered.event), members, posts)
        return {MEMBERS: members, POSTS: posts}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        """Fold the batch on in-memory state, then write each touched row once."""
        fold = _Fold(changes)
        for delivered in batch:
            fold.event(cast(AnyEvent, delivered.event))
        fold.flush()


def _keys(event: AnyEvent, members: list[Key], posts: list[Key]) -> None:
    """Add the keys folding ``event`` reads. Mirrors :meth:`_Fold.event`."""
    c = event.community
    actor = acting_member(event)
    if actor is not None:
        members.append((c, actor))
    match event:
        case MemberJoined() | MemberLeft():
            if event.member != SYSTEM_ACTOR:
                members.append((c, event.member))
        case PostCreated() | PostDeleted() | ReplyCreated() | ReplyDeleted() | AnswerAccepted():
            posts.append((c, event.post))
        case ReactionAdded():
            if event.target_author != SYSTEM_ACTOR:
                members.append((c, event.target_author))
            if event.target_kind == "post":
                posts.append((c, event.target))
        case (
            ReactionRemoved()
            | PostEdited()
            | ContentReported()
            | ModerationDecided()
            | ContentHidden()
            | ContentRestored()
        ):
            pass
        case _:
            assert_never(event)


class _Fold:
    """One batch's state: rows read (members, posts) and counters to add (days, hours, cohorts)."""

    __slots__ = ("changes", "cohorts", "daily", "hourly", "members", "posts", "sizes")

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.members: dict[Key, _Member] = {}
        self.posts: dict[Key, _Post] = {}
        self.daily: dict[Key, list[int]] = {}
        self.hourly: dict[Key, list[int]] = {}
        self.cohorts: dict[Key, int] = {}
        self.sizes: dict[Key, int] = {}

    # -- state ---------------------------------------------------------------------------------

    def member(self, c: str, member: str) -> _Member:
        key = (c, member)
        state = self.members.get(key)
        if state is None:
            state = self.members[key] = _Member(self.changes.peek(MEMBERS, key))
        return state

    def post(self, c: str, post: str) -> _Post:
        key = (c, post)
        state = self.posts.get(key)
        if state is None:
            state = self.posts[key] = _Post(self.changes.peek(POSTS, key))
        return state

    def count(self, c: str, day: date, column: str, delta: int = 1) -> None:
        key = (c, day)
        row = self.daily.get(key)
        if row is None:
            row = self.daily[key] = [0] * len(DAILY_COUNTERS)
        row[_COLUMN[column]] += delta

    def hour(self, c: str, at: datetime, reports: int, negative: int) -> None:
        key = (c, at.replace(minute=0, second=0, microsecond=0))
        row = self.hourly.get(key)
        if row is None:
            row = self.hourly[key] = [0, 0]
        row[0] += reports
        row[1] += negative

    # -- events --------------------------------------------------------------------------------

    def event(self, event: AnyEvent) -> None:
        c, at = event.community, event.occurred_at
        actor = acting_member(event)
        day = at.date()
        engaged = False
        match event:
            case MemberJoined():
                self.count(c, day, "joins")
                self.joined(c, event.member, at)
            case MemberLeft():
                self.count(c, day, "leaves")
                if event.member != SYSTEM_ACTOR:
                    m = self.member(c, event.member)
                    m.left_at = at if m.left_at is None or at > m.left_at else m.left_at
            case PostCreated():
                self.count(c, day, "posts")
                engaged = True
                p = self.post(c, event.post)
                p.author = event.actor
                if p.created_at is None or at < p.created_at:
                    p.created_at = at
                if event.actor != SYSTEM_ACTOR:
                    self.member(c, event.actor).posts += 1
                    self.contributed(c, event.actor, at)
            case PostDeleted():
                p = self.post(c, event.post)
                if p.deleted_at is None or at < p.deleted_at:
                    p.deleted_at = at
            case ReplyCreated():
                self.count(c, day, "replies")
                engaged = True
                self.replied(event)
                if event.actor != SYSTEM_ACTOR:
                    self.member(c, event.actor).replies += 1
                    self.contributed(c, event.actor, at)
            case ReplyDeleted():
                p = self.post(c, event.post)
                p.live.pop(event.reply, None)
                p.gone.add(event.reply)
            case ReactionAdded():
                self.count(c, day, "reactions")
                engaged = True
                if event.kind in NEGATIVE_REACTIONS:
                    self.hour(c, at, 0, 1)
                if actor is not None:
                    self.member(c, actor).reactions_given += 1
                if event.target_author != SYSTEM_ACTOR:
                    self.member(c, event.target_author).reactions_received += 1
                if event.target_kind == "post":
                    self.post(c, event.target).reactions += 1
            case ReactionRemoved():
                self.count(c, day, "reactions_removed")
            case AnswerAccepted():
                p = self.post(c, event.post)
                p.accepted_reply = event.reply
                if p.accepted_at is None or at < p.accepted_at:
                    p.accepted_at = at
            case ContentReported():
                self.count(c, day, "reports")
                self.hour(c, at, 1, 0)
            case PostEdited() | ModerationDecided() | ContentHidden() | ContentRestored():
                pass
            case _:
                assert_never(event)
        if actor is not None:
            self.active(c, actor, at, engaged)

    def replied(self, event: ReplyCreated) -> None:
        """Record a reply in its post's thread; the earliest creation of an id wins."""
        p = self.post(event.community, event.post)
        if event.reply in p.gone:
            return
        us = micros(event.occurred_at)
        counts = int(event.actor not in (event.post_author, SYSTEM_ACTOR))
        known = p.live.get(event.reply)
        if known is None or us < known[0]:
            p.live[event.reply] = (us, counts)

    def contributed(self, c: str, member: str, at: datetime) -> None:
        """A post or reply by ``member``: it may be their first contribution ever."""
        m = self.member(c, member)
        first = m.first_contribution_at
        if first is not None and first <= at:
            return
        if first is not None:
            self.count(c, first.date(), "new_contributors", -1)
        self.count(c, at.date(), "new_contributors")
        m.first_contribution_at = at

    def joined(self, c: str, member: str, at: datetime) -> None:
        """A join: the first one sets the cohort; an earlier one (late event) moves it."""
        m = self.member(c, member)
        if m.last_joined_at is None or at > m.last_joined_at:
            m.last_joined_at = at
        if m.joined_at is not None and m.joined_at <= at:
            return
        old = None if m.joined_at is None else week_of(m.joined_at.date())
        new = week_of(at.date())
        m.joined_at = at
        if old == new:
            return
        if old is not None:
            self.move_cohort(c, m, old, -1)
        self.move_cohort(c, m, new, 1)

    def move_cohort(self, c: str, m: _Member, cohort: date, delta: int) -> None:
        """Add (or take away) the member to cohort ``cohort``'s size and its active weeks."""
        key = (c, cohort)
        self.sizes[key] = self.sizes.get(key, 0) + delta
        for week in range(COHORT_WEEKS + 1):
            monday = shift_day(cohort, week * _WEEK)
            if week and monday == date.max:
                break  # weeks after the calendar's last day: none to count
            if m.active_in_week(monday):
                cell = (c, cohort, week)
                self.cohorts[cell] = self.cohorts.get(cell, 0) + delta

    def active(self, c: str, member: str, at: datetime, engaged: bool) -> None:
        """The member acted at ``at``: update last activity, DAU/WAU/MAU, cohorts, engagement."""
        m = self.member(c, member)
        if m.last_active_at is None or at > m.last_active_at:
            m.last_active_at = at
        day = at.date()
        if m.base is None:
            m.base = day
        elif day < m.base:
            m.active = days.rebase(m.active, m.base, day)
            m.engaged = days.rebase(m.engaged, m.base, day)
            m.base = day
        bit = 1 << (day - m.base).days
        if not m.active & bit:
            monday = week_of(day)
            new_week = not m.active_in_week(monday)
            before = days.previous_day(m.active, m.base, day)
            after = days.next_day(m.active, m.base, day)
            m.active |= bit
            m.active_days += 1
            self.count(c, day, "active")
            self.window(c, day, before, after, WAU_DAYS, "wau")
            self.window(c, day, before, after, MAU_DAYS, "mau")
            if new_week and m.joined_at is not None:
                cohort = week_of(m.joined_at.date())
                week = (monday - cohort).days // 7
                if 0 <= week <= COHORT_WEEKS:
                    cell = (c, cohort, week)
                    self.cohorts[cell] = self.cohorts.get(cell, 0) + 1
        if engaged and not m.engaged & bit:
            m.engaged |= bit
            self.count(c, day, "engaged")

    def window(
        self, c: str, day: date, before: date | None, after: date | None, width: int, column: str
    ) -> None:
        """Count a new active ``day`` in the rolling windows that held no other active day.

        The window ending on ``d`` is ``d - width + 1 .. d``; it holds ``day`` for ``d`` in
        ``day .. day + width - 1``, the previous active day for ``d < before + width`` and the
        next one for ``d >= after``.
        """
        first = day if before is None else max(day, shift_day(before, width * _DAY))
        last = shift_day(day, (width - 1) * _DAY)
        if after is not None:
            last = min(last, after - _DAY)
        d = first
        while d <= last:
            self.count(c, d, column)
            if d == last:  # not one day further: `last` may be the calendar's last day
                break
            d += _DAY

    # -- writing -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every touched row once: members and posts whole, counters as additions."""
        changes = self.changes
        for key, m in self.members.items():
            changes.put(MEMBERS, key, **m.columns())
        for key, p in self.posts.items():
            changes.put(POSTS, key, **p.columns())
        for key, row in self.daily.items():
            changes.add(DAILY, key, **dict(zip(DAILY_COUNTERS, row, strict=True)))
        for key, (reports, negative) in self.hourly.items():
            changes.add(HOURLY, key, reports=reports, negative=negative)
        for key, active in self.cohorts.items():
            changes.add(COHORTS, key, active=active)
        for key, members in self.sizes.items():
            changes.add(COHORT_SIZES, key, members=members)
