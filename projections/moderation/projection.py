"""The moderation queue projection: reports folded into prioritised items, outcomes and a log.

One queue item per reported target (post, reply or member), keyed (community, target_kind,
target). An item goes through *rounds*: a round opens with the first report on a target that is
not pending, collects reports, and ends when a moderator decides (``approved`` or ``rejected``)
or the target disappears (``ignored``). Every number is computed from this projection's own view
of the log -- standing, accuracy, cooldowns -- never from another projection's tables.

The fold reads only rows it can name from the batch (:meth:`ModerationQueue.reads`). A decision
names its item, but not the reporters of the item's open reports; so the item row carries its
open reports (``open_list``) and the decision updates the reports, the reporters' counters and the
cooldowns *blindly* -- ``put`` and ``add`` without a read -- which the engine merges exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, ClassVar, Final, assert_never, cast

import sqlalchemy as sa

from events.catalogue import (
    AnswerAccepted,
    AnyEvent,
    ContentHidden,
    ContentReported,
    ContentRestored,
    Event,
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
)
from events.fields import ReportReason
from events.limits import SYSTEM_ACTOR
from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes, Key, Row
from projections.columns import UtcDateTime
from projections.moderation.scoring import (
    Standing,
    Weight,
    decayed_outcomes,
    outcome_of,
    period_of,
    priority_of,
    report_weight,
    seconds_between,
    severity_key,
    window,
)
from projections.moderation.settings import DEFAULT_SETTINGS, ModerationSettings, version_of

QUEUE: Final = "moderation_queue"
REPORTS: Final = "moderation_reports"
REPORTERS: Final = "moderation_reporters"
PERIODS: Final = "moderation_reporter_periods"
MEMBERS: Final = "moderation_members"
COOLDOWNS: Final = "moderation_cooldowns"
LOG: Final = "moderation_log"
CONTENT: Final = "moderation_content"

TABLES: Final = (QUEUE, REPORTS, REPORTERS, PERIODS, MEMBERS, COOLDOWNS, LOG, CONTENT)
"""Logical table names (also the stable view names once a generation is active)."""

ITEM_STATUSES: Final = ("pending", "approved", "rejected", "ignored")
REPORT_STATUSES: Final = ("pending", "agreed", "disagreed", "ignored", "cooled", "duplicate")

_QUEUE_KEY: Final = ("community", "target_kind", "target")
_ID = sa.String(64)
_TIME = UtcDateTime()


def _tables(metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
    """The moderation tables; see docs/moderation.md for what each column means."""
    queue = sa.Table(
        table_name(QUEUE),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("target_kind", sa.String(8), primary_key=True, comment="post | reply | member"),
        sa.Column(
            "target", _ID, primary_key=True, comment="id of the post, reply or member reported"
        ),
        sa.Column(
            "target_author",
            _ID,
            nullable=False,
            comment="author of the target, as its creation event says",
        ),
        sa.Column("status", sa.String(16), nullable=False, comment=" | ".join(ITEM_STATUSES)),
        sa.Column("priority", sa.String(8), nullable=False, comment="low | medium | high"),
        sa.Column("score", sa.BigInteger, nullable=False, comment="pending + agreed, milli-points"),
        sa.Column(
            "pending_score",
            sa.BigInteger,
            nullable=False,
            comment="sum of the open reports' weights, milli-points",
        ),
        sa.Column(
            "agreed_score",
            sa.BigInteger,
            nullable=False,
            comment="sum of the agreed reports' weights (all rounds), milli-points",
        ),
        sa.Column("round", sa.Integer, nullable=False, comment="1 + times reopened"),
        sa.Column("reports", sa.Integer, nullable=False, comment="every report recorded"),
        sa.Column(
            "open_reports", sa.Integer, nullable=False, comment="reports open in this round (count)"
        ),
        sa.Column(
            "open_list", sa.Text, nullable=False, comment="JSON [[report, reporter, reason], ...]"
        ),
        sa.Column("top_reason", sa.String(16), nullable=False, comment="most severe open reason"),
        sa.Column(
            "first_reported_at",
            _TIME,
            nullable=False,
            comment="time of the first report on the target",
        ),
        sa.Column("last_reported_at", _TIME, nullable=False, comment="time of the latest report"),
        sa.Column("opened_at", _TIME, nullable=False, comment="earliest open report of the round"),
        sa.Column(
            "opened_seq",
            sa.BigInteger,
            nullable=False,
            comment="stream sequence of the report that opened the round",
        ),
        sa.Column("resolved_at", _TIME, comment="end of the last round"),
        sa.Column(
            "resolved_seq", sa.BigInteger, comment="stream sequence that ended the last round"
        ),
        sa.Column("resolution_seconds", sa.BigInteger, comment="last round: end - opened_at"),
        sa.Column("decision", sa.String(16), comment="last moderator decision"),
        sa.Column("decided_by", _ID, comment="moderator of the last decision"),
        sa.Column("decided_at", _TIME, comment="time of the last decision"),
        sa.Column("edited_at", _TIME, comment="last post.edited"),
        sa.Column("deleted_at", _TIME, comment="target deleted / member removed"),
        sa.Column("auto_hide_due_at_seq", sa.BigInteger, comment="seq of the report that crossed"),
        sa.Column(
            "auto_hide_due_at",
            _TIME,
            comment="event time of the report that crossed the auto-hide score",
        ),
        sa.Column("auto_hide_score", sa.BigInteger, comment="score when it crossed"),
        sa.Column(
            "auto_hide_round", sa.Integer, comment="round in which it was marked for auto-hide"
        ),
        sa.Column("hidden", sa.Boolean, nullable=False, comment="the target is hidden now"),
        sa.Column("hidden_at", _TIME, comment="time of the last content.hidden"),
        sa.Column(
            "hidden_by",
            _ID,
            comment="actor of the last content.hidden (system: the auto-hide rule)",
        ),
        sa.Column("hide_rule", sa.String(100), comment="rule named by the last content.hidden"),
        sa.Column("auto_hidden_round", sa.Integer, comment="round in which `system` hid it"),
        sa.Column("restored_at", _TIME, comment="time of the last content.restored"),
        sa.Column(
            "updated_seq",
            sa.BigInteger,
            nullable=False,
            comment="stream sequence of the row's last change",
        ),
    )
    sa.Index(
        f"ix_{queue.name}_by_score",
        queue.c.community,
        queue.c.status,
        queue.c.score.desc(),
        queue.c.opened_at,
    )
    sa.Index(f"ix_{queue.name}_by_age", queue.c.community, queue.c.status, queue.c.opened_at)

    # Descriptive columns are nullable only because a decision updates a report without reading
    # it (a partial upsert); the report's own event always writes every one of them.
    reports = sa.Table(
        table_name(REPORTS),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("report", _ID, primary_key=True, comment="report id"),
        sa.Column("target_kind", sa.String(8), comment="post | reply | member"),
        sa.Column("target", _ID, comment="id of the target reported"),
        sa.Column("target_author", _ID, comment="the item's author (not the reporter's claim)"),
        sa.Column("reporter", _ID, comment="member who reported"),
        sa.Column("reason", sa.String(16), comment="reason given (spam)"),
        sa.Column("note", sa.Text, comment="reporter's note"),
        sa.Column("reported_at", _TIME, comment="time of the report"),
        sa.Column("seq", sa.BigInteger, comment="stream sequence of the report"),
        sa.Column("round", sa.Integer, comment="the item's round it belongs to"),
        sa.Column("status", sa.String(16), nullable=False, comment=" | ".join(REPORT_STATUSES)),
        sa.Column(
            "standing", sa.Integer, comment="reporter's standing at the report (0-4, staff 5)"
        ),
        sa.Column("accuracy_bonus", sa.BigInteger, comment="milli-points"),
        sa.Column("reason_bonus", sa.BigInteger, comment="milli-points"),
        sa.Column("weight", sa.BigInteger, comment="milli-points"),
        sa.Column(
            "resolved_at", _TIME, comment="time of the decision or deletion that resolved it"
        ),
        sa.Column("resolved_seq", sa.BigInteger, comment="stream sequence that resolved it"),
        sa.Column("decision", sa.String(16), comment="decision that resolved it"),
        sa.Column("decided_by", _ID, comment="moderator who decided"),
    )
    sa.Index(
        f"ix_{reports.name}_target",
        reports.c.community,
        reports.c.target_kind,
        reports.c.target,
        reports.c.seq,
    )
    sa.Index(f"ix_{reports.name}_reporter", reports.c.community, reports.c.reporter)

    reporters = sa.Table(
        table_name(REPORTERS),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("reporter", _ID, primary_key=True, comment="member who reports"),
        sa.Column("reports", sa.Integer, nullable=False, default=0, comment="reports made (count)"),
        sa.Column(
            "cooled", sa.Integer, nullable=False, default=0, comment="reports cooled (count)"
        ),
        sa.Column(
            "duplicates",
            sa.Integer,
            nullable=False,
            default=0,
            comment="reports duplicating an open one of theirs (count)",
        ),
        sa.Column(
            "agreed",
            sa.Integer,
            nullable=False,
            default=0,
            comment="reports agreed with, self-reports left out (count)",
        ),
        sa.Column(
            "disagreed",
            sa.Integer,
            nullable=False,
            default=0,
            comment="reports disagreed with, self-reports left out (count)",
        ),
        sa.Column(
            "ignored",
            sa.Integer,
            nullable=False,
            default=0,
            comment="reports whose target disappeared, self-reports left out (count)",
        ),
        sa.Column("first_reported_at", _TIME, comment="time of the first report"),
        sa.Column("last_reported_at", _TIME, comment="time of the latest report"),
        sa.Column("standing", sa.Integer, comment="at the last report"),
        sa.Column("accuracy_bonus", sa.BigInteger, comment="at the last report, milli-points"),
        sa.Column("last_weight", sa.BigInteger, comment="milli-points"),
    )

    periods = sa.Table(
        table_name(PERIODS),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("reporter", _ID, primary_key=True, comment="member who reports"),
        sa.Column("period", sa.Integer, primary_key=True, comment="days since 1970 // period"),
        sa.Column(
            "agreed",
            sa.Integer,
            nullable=False,
            default=0,
            comment="reports agreed with in the period (count)",
        ),
        sa.Column(
            "disagreed",
            sa.Integer,
            nullable=False,
            default=0,
            comment="reports disagreed with in the period (count)",
        ),
    )

    members = sa.Table(
        table_name(MEMBERS),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("member", _ID, primary_key=True, comment="member id"),
        sa.Column("joined_at", _TIME, comment="first member.joined"),
        sa.Column("posts", sa.Integer, nullable=False, default=0, comment="posts created (count)"),
        sa.Column(
            "replies", sa.Integer, nullable=False, default=0, comment="replies created (count)"
        ),
        sa.Column("answers", sa.Integer, nullable=False, default=0, comment="accepted answers"),
        sa.Column(
            "sanctions",
            sa.Integer,
            nullable=False,
            default=0,
            comment="approving decisions against the member (count)",
        ),
        sa.Column("decisions", sa.Integer, nullable=False, default=0, comment="as moderator"),
        sa.Column(
            "staff",
            sa.Boolean,
            nullable=False,
            default=False,
            comment="has decided as a moderator in the community",
        ),
    )

    cooldowns = sa.Table(
        table_name(COOLDOWNS),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("target_kind", sa.String(8), primary_key=True, comment="post | reply | member"),
        sa.Column("target", _ID, primary_key=True, comment="id of the target"),
        sa.Column("reporter", _ID, primary_key=True, comment="member who reported"),
        sa.Column("reason", sa.String(16), primary_key=True, comment="reason of the report"),
        sa.Column(
            "resolved_at",
            _TIME,
            nullable=False,
            comment="time of the last resolution of such a report",
        ),
        sa.Column(
            "resolved_seq",
            sa.BigInteger,
            nullable=False,
            comment="stream sequence of that resolution",
        ),
        sa.Column(
            "outcome", sa.String(16), nullable=False, comment="that resolution: approved | rejected"
        ),
    )

    log = sa.Table(
        table_name(LOG),
        metadata,
        sa.Column("seq", sa.BigInteger, primary_key=True, comment="stream sequence of the event"),
        sa.Column("community", _ID, nullable=False, comment="community id"),
        sa.Column("day", sa.Date, nullable=False, comment="UTC day of occurred_at"),
        sa.Column("occurred_at", _TIME, nullable=False, comment="event time"),
        sa.Column("kind", sa.String(16), nullable=False, comment="decision|hide|restore|ignore"),
        sa.Column("action", sa.String(16), nullable=False, comment="the decision, or the kind"),
        sa.Column("outcome", sa.String(16), comment="approved | rejected | ignored"),
        sa.Column("target_kind", sa.String(8), nullable=False, comment="post | reply | member"),
        sa.Column("target", _ID, nullable=False, comment="id of the target"),
        sa.Column("target_author", _ID, nullable=False, comment="author of the target"),
        sa.Column(
            "actor",
            _ID,
            nullable=False,
            comment="actor of the event (a moderator, system, a deleter)",
        ),
        sa.Column("rule", sa.String(100), comment="rule named by a hide"),
        sa.Column("note", sa.Text, nullable=False, comment="note of the event"),
        sa.Column("until", _TIME, comment="end of a suspension"),
        sa.Column("round", sa.Integer, comment="the item's round"),
        sa.Column(
            "reports_resolved",
            sa.Integer,
            nullable=False,
            comment="open reports this row resolved (count)",
        ),
        sa.Column("opened_at", _TIME, comment="start of the round this row ended"),
        sa.Column("open_seconds", sa.BigInteger, comment="time to resolution"),
        sa.Column("score", sa.BigInteger, comment="item score before this row"),
        sa.Column("auto_hidden", sa.Boolean, nullable=False, comment="auto-hidden this round"),
    )
    sa.Index(f"ix_{log.name}_day", log.c.community, log.c.day, log.c.kind)
    sa.Index(f"ix_{log.name}_opened", log.c.community, log.c.opened_at)

    # Who wrote a post or reply, as its own creation event says: the author a report is judged
    # against, whatever the reporter claims.
    content = sa.Table(
        table_name(CONTENT),
        metadata,
        sa.Column("community", _ID, primary_key=True, comment="community id"),
        sa.Column("kind", sa.String(8), primary_key=True, comment="post | reply"),
        sa.Column("content", _ID, primary_key=True, comment="id of the post or reply"),
        sa.Column("author", _ID, nullable=False, comment="actor of its first creation event"),
        sa.Column(
            "created_seq",
            sa.BigInteger,
            nullable=False,
            comment="stream sequence of its first creation event",
        ),
    )

    return {
        QUEUE: queue,
        REPORTS: reports,
        REPORTERS: reporters,
        PERIODS: periods,
        MEMBERS: members,
        COOLDOWNS: cooldowns,
        LOG: log,
        CONTENT: content,
    }


OpenReport = tuple[str, str, ReportReason]
"""An open report as the item keeps it: (report id, reporter, reason)."""


def _decode_open(text: str) -> list[OpenReport]:
    return [(str(r), str(m), cast(ReportReason, reason)) for r, m, reason in json.loads(text)]


def _encode_open(reports: Sequence[OpenReport]) -> str:
    return json.dumps([list(r) for r in reports], separators=(",", ":"))


def _as_any(event: Event) -> AnyEvent:
    """The catalogue union, for an exhaustive ``match``."""
    return cast(AnyEvent, event)


def weight_from_rows(
    member: Row | None,
    record: Row | None,
    buckets: Mapping[int, tuple[int, int]],
    at: datetime,
    reason: ReportReason,
    settings: ModerationSettings,
) -> Weight:
    """A report's weight at ``at`` from the reporter's rows (members, reporters, periods).

    Shared by the fold and :func:`projections.moderation.queries.report_weight_now`, so the
    dashboard explains exactly the weight the fold would give.
    """
    standing = Standing(agreed_reports=0 if record is None else int(record["agreed"]))
    if member is not None:
        joined = member["joined_at"]
        standing = Standing(
            staff=bool(member["staff"]),
            tenure=None if joined is None else max(at - joined, timedelta(0)),
            contributions=int(member["posts"] + member["replies"] + member["answers"]),
            agreed_reports=standing.agreed_reports,
            sanctions=int(member["sanctions"]),
        )
    period = period_of(at, settings.decay_period_days)
    agreed, disagreed = decayed_outcomes(buckets, period, settings)
    return report_weight(standing, agreed, disagreed, reason, settings)


class ModerationQueue(Projection):
    """Moderation queue, reports, reporter accuracy and the moderation log.

    ``settings`` is a class attribute and ``version`` is derived from it: configure a deployment
    with :meth:`configured`, which returns a subclass whose version carries the settings'
    fingerprint. A subclass that sets ``settings`` without the matching ``version`` is refused.
    """

    name = "moderation"
    settings: ClassVar[ModerationSettings] = DEFAULT_SETTINGS
    version = version_of(DEFAULT_SETTINGS)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a subclass whose version does not match its settings."""
        super().__init_subclass__(**kwargs)
        expected = version_of(cls.settings)
        if cls.version != expected:
            raise TypeError(
                f"{cls.__name__}.version is {cls.version} but its settings need {expected}: "
                "use ModerationQueue.configured(settings)"
            )

    @classmethod
    def configured(cls, settings: ModerationSettings) -> type[ModerationQueue]:
        """The projection class for ``settings`` (a registry factory); the same class per settings.

        ``ModerationQueue.configured(DEFAULT_SETTINGS) is ModerationQueue``; other settings get a
        subclass whose version carries their fingerprint.
        """
        return _configured(cls, settings)

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        """Queue items, reports, reporters (+ per-period outcomes), members, cooldowns, log."""
        return _tables(metadata, table_name)

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        """Per event, the rows its fold reads: the item, and for a report the reporter's rows."""
        wanted: dict[str, list[Key]] = {name: [] for name in TABLES}
        for delivered in batch:
            for table, key in _reads_of(_as_any(delivered.event), self.settings):
                wanted[table].append(key)
        return {table: keys for table, keys in wanted.items() if keys}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        """Fold the batch in stream order; see the module docstring and docs/moderation.md."""
        folder = _Folder(changes, self.settings)
        for delivered in batch:
            folder.fold(delivered.seq, _as_any(delivered.event))


@cache
def _configured(base: type[ModerationQueue], settings: ModerationSettings) -> type[ModerationQueue]:
    if settings == base.settings:
        return base
    # Its docstring is the base's: docgen describes the projection by it.
    namespace = {"settings": settings, "version": version_of(settings), "__doc__": base.__doc__}
    return cast(type[ModerationQueue], type(base.__name__, (base,), namespace))


def _reads_of(event: AnyEvent, settings: ModerationSettings) -> list[tuple[str, Key]]:
    c = event.community
    match event:
        case ContentReported():
            reporter = event.actor
            period = period_of(event.occurred_at, settings.decay_period_days)
            return [
                (QUEUE, (c, event.target_kind, event.target)),
                *([] if event.target_kind == "member" else [(CONTENT, _content_key(event))]),
                (REPORTS, (c, event.report)),
                (MEMBERS, (c, reporter)),
                (REPORTERS, (c, reporter)),
                (COOLDOWNS, (c, event.target_kind, event.target, reporter, event.reason)),
                *((PERIODS, (c, reporter, p)) for p in window(period, settings)),
            ]
        case ModerationDecided() | ContentHidden() | ContentRestored():
            return [(QUEUE, (c, event.target_kind, event.target))]
        case PostEdited() | PostDeleted():
            return [(QUEUE, (c, "post", event.post))]
        case ReplyDeleted():
            return [(QUEUE, (c, "reply", event.reply))]
        case MemberJoined():
            return [(QUEUE, (c, "member", event.member)), (MEMBERS, (c, event.member))]
        case MemberLeft():
            return [(QUEUE, (c, "member", event.member))]
        case PostCreated():
            return [(CONTENT, (c, "post", event.post))]
        case ReplyCreated():
            return [(CONTENT, (c, "reply", event.reply))]
        case ReactionAdded() | ReactionRemoved() | AnswerAccepted():
            return []
        case _:
            assert_never(event)


class _Folder:
    """The fold of one batch: event handlers over a Changes object."""

    def __init__(self, changes: Changes, settings: ModerationSettings) -> None:
        self.changes = changes
        self.settings = settings

    # -- dispatch ---------------------------------------------------------------------------

    def fold(self, seq: int, event: AnyEvent) -> None:
        match event:
            case ContentReported():
                self.reported(seq, event)
            case ModerationDecided():
                self.decided(seq, event)
            case ContentHidden():
                self.hidden(seq, event)
            case ContentRestored():
                self.restored(seq, event)
            case PostEdited():
                self.edited(seq, event)
            case PostDeleted():
                self.gone(seq, event, (event.community, "post", event.post))
            case ReplyDeleted():
                self.gone(seq, event, (event.community, "reply", event.reply))
            case MemberLeft():
                if event.reason in ("removed", "deleted"):
                    self.gone(seq, event, (event.community, "member", event.member))
            case MemberJoined():
                self.joined(seq, event)
            case PostCreated():
                self.member_add(event.community, event.actor, posts=1)
                self.created(seq, (event.community, "post", event.post), event.actor)
            case ReplyCreated():
                self.member_add(event.community, event.actor, replies=1)
                self.created(seq, (event.community, "reply", event.reply), event.actor)
            case AnswerAccepted():
                self.member_add(event.community, event.reply_author, answers=1)
            case ReactionAdded() | ReactionRemoved():
                pass
            case _:
                assert_never(event)

    # -- rows -------------------------------------------------------------------------------

    def item(self, key: Key) -> Row | None:
        return self.changes.get(QUEUE, key)

    def put_item(self, key: Key, item: Row, seq: int) -> None:
        item["score"] = item["pending_score"] + item["agreed_score"]
        item["priority"] = priority_of(item["score"], self.settings)
        item["updated_seq"] = seq
        values = {k: v for k, v in item.items() if k not in _QUEUE_KEY}
        self.changes.put(QUEUE, key, **values)

    def member_add(self, community: str, member: str, **counts: int) -> None:
        if member != SYSTEM_ACTOR:
            self.changes.add(MEMBERS, (community, member), **counts)

    def log(self, seq: int, event: Event, **values: Any) -> None:
        row: Row = {
            "seq": seq,
            "community": event.community,
            "day": event.occurred_at.date(),
            "occurred_at": event.occurred_at,
            "actor": event.actor,
            "rule": None,
            "note": "",
            "until": None,
            "outcome": None,
            "round": None,
            "reports_resolved": 0,
            "opened_at": None,
            "open_seconds": None,
            "score": None,
            "auto_hidden": False,
        }
        row.update(values)
        self.changes.insert(LOG, row)

    # -- authors ----------------------------------------------------------------------------

    def created(self, seq: int, key: Key, author: str) -> None:
        """Record who wrote a post or reply; a later event reusing its id does not change it."""
        if self.changes.get(CONTENT, key) is None:
            self.changes.put(CONTENT, key, author=author, created_seq=seq)

    def author_of(self, event: ContentReported) -> str:
        """Who wrote the reported target, as the log says, for a new item.

        A member is their own author. A post or reply's author is the actor of its creation event
        when the log holds it; only when it does not is the first reporter's claim taken.
        """
        if event.target_kind == "member":
            return event.target
        row = self.changes.get(CONTENT, _content_key(event))
        return event.target_author if row is None else str(row["author"])

    # -- members ----------------------------------------------------------------------------

    def joined(self, seq: int, event: MemberJoined) -> None:
        c, at = event.community, event.occurred_at
        # Read and put, not ``least``: Changes compares a datetime it merges with the loaded one,
        # which SQLite returns naive (see docs/moderation.md, engine notes).
        member = self.changes.get(MEMBERS, (c, event.member))
        if member is None or member["joined_at"] is None or at < member["joined_at"]:
            self.changes.put(MEMBERS, (c, event.member), joined_at=at)
        # A removed member who comes back can be reported (and reopened) again.
        key = (c, "member", event.member)
        item = self.item(key)
        if item is not None and item["deleted_at"] is not None:
            item["deleted_at"] = None
            self.put_item(key, item, seq)

    # -- reports ----------------------------------------------------------------------------

    def weigh(self, event: ContentReported) -> Weight:
        """The report's weight from the reporter's standing and recency-weighted accuracy."""
        c, reporter, at = event.community, event.actor, event.occurred_at
        period = period_of(at, self.settings.decay_period_days)
        buckets: dict[int, tuple[int, int]] = {}
        for p in window(period, self.settings):
            row = self.changes.get(PERIODS, (c, reporter, p))
            if row is not None:
                buckets[p] = (int(row["agreed"]), int(row["disagreed"]))
        return weight_from_rows(
            self.changes.get(MEMBERS, (c, reporter)),
            self.changes.get(REPORTERS, (c, reporter)),
            buckets,
            at,
            event.reason,
            self.settings,
        )

    def cooling(self, event: ContentReported, item: Row) -> bool:
        """Whether this reporter's report with this reason was resolved too recently to reopen."""
        key = (event.community, event.target_kind, event.target, event.actor, event.reason)
        row = self.changes.get(COOLDOWNS, key)
        if row is None:
            return False
        resolved: datetime = row["resolved_at"]
        if item["edited_at"] is not None and item["edited_at"] > resolved:
            return False  # the post changed since that review: a fresh look is warranted
        return event.occurred_at - resolved < timedelta(hours=self.settings.cooldown_hours)

    def reported(self, seq: int, event: ContentReported) -> None:
        c, at = event.community, event.occurred_at
        if self.changes.get(REPORTS, (c, event.report)) is not None:
            return  # a report id is unique per community: a second event with it is not a report
        weight = self.weigh(event)
        key = (c, event.target_kind, event.target)
        item = self.item(key)
        status: str
        if item is None:
            item = _new_item(event, self.author_of(event), seq)
            status = "pending"
        elif item["status"] == "pending":
            reporters = {reporter for _, reporter, _ in _decode_open(item["open_list"])}
            status = "duplicate" if event.actor in reporters else "pending"
        elif item["deleted_at"] is not None:
            status = "ignored"  # reported after the target was deleted: nothing to review
        elif self.cooling(event, item):
            status = "cooled"
        else:  # reopen: a new round starts with this report
            item.update(
                status="pending",
                round=item["round"] + 1,
                opened_at=at,
                opened_seq=seq,
                top_reason=event.reason,
            )
            status = "pending"
        item["reports"] += 1
        item["first_reported_at"] = min(item["first_reported_at"], at)
        item["last_reported_at"] = max(item["last_reported_at"], at)
        if status == "pending":
            self.add_open(item, event, weight.total, seq)
        self.put_item(key, item, seq)

        resolved = status == "ignored"
        self.changes.put(
            REPORTS,
            (c, event.report),
            target_kind=event.target_kind,
            target=event.target,
            target_author=item["target_author"],
            reporter=event.actor,
            reason=event.reason,
            note=event.note,
            reported_at=at,
            seq=seq,
            round=item["round"],
            status=status,
            standing=weight.standing,
            accuracy_bonus=weight.accuracy_bonus,
            reason_bonus=weight.reason_bonus,
            weight=weight.total,
            resolved_at=at if resolved else None,
            resolved_seq=seq if resolved else None,
            decision=None,
            decided_by=None,
        )
        record = self.changes.get(REPORTERS, (c, event.actor))
        first = last = at
        if record is not None and record["first_reported_at"] is not None:
            first = min(record["first_reported_at"], at)
            last = max(record["last_reported_at"], at)
        self.changes.add(
            REPORTERS,
            (c, event.actor),
            reports=1,
            cooled=int(status == "cooled"),
            duplicates=int(status == "duplicate"),
            ignored=int(status == "ignored" and event.actor != item["target_author"]),
        )
        self.changes.put(
            REPORTERS,
            (c, event.actor),
            first_reported_at=first,
            last_reported_at=last,
            standing=weight.standing,
            accuracy_bonus=weight.accuracy_bonus,
            last_weight=weight.total,
        )

    def add_open(self, item: Row, event: ContentReported, weight: int, seq: int) -> None:
        """Add a scoring report to the item's round; mark the item for hiding if it crosses."""
        reports = _decode_open(item["open_list"])
        reports.append((event.report, event.actor, event.reason))
        item["open_list"] = _encode_open(reports)
        item["open_reports"] = len(reports)
        item["opened_at"] = min(item["opened_at"], event.occurred_at)
        item["pending_score"] += weight
        item["top_reason"] = min(
            (reason for _, _, reason in reports),
            key=lambda reason: severity_key(reason, self.settings),
        )
        score = item["pending_score"] + item["agreed_score"]
        if (
            item["target_kind"] != "member"
            and not item["hidden"]
            and item["auto_hide_round"] != item["round"]
            and score >= self.settings.auto_hide_score
        ):
            item.update(
                auto_hide_due_at_seq=seq,
                auto_hide_due_at=event.occurred_at,
                auto_hide_score=score,
                auto_hide_round=item["round"],
            )

    # -- resolutions ------------------------------------------------------------------------

    def decided(self, seq: int, event: ModerationDecided) -> None:
        c, at = event.community, event.occurred_at
        outcome = outcome_of(event.decision)
        self.member_add(c, event.actor, decisions=1)
        if event.actor != SYSTEM_ACTOR:
            self.changes.put(MEMBERS, (c, event.actor), staff=True)
        if outcome == "approved":
            self.member_add(c, event.target_author, sanctions=1)
        logged: Row = {
            "kind": "decision",
            "action": event.decision,
            "outcome": outcome,
            "target_kind": event.target_kind,
            "target": event.target,
            "target_author": event.target_author,
            "note": event.note,
            "until": event.until,
        }
        key = (c, event.target_kind, event.target)
        item = self.item(key)
        if item is None:  # a decision on a target nobody reported: logged only
            self.log(seq, event, **logged)
            return
        logged.update(
            round=item["round"],
            score=item["pending_score"] + item["agreed_score"],
            auto_hidden=item["auto_hidden_round"] == item["round"],
        )
        if item["status"] == "pending":
            report_status = "agreed" if outcome == "approved" else "disagreed"
            period = period_of(at, self.settings.decay_period_days)
            reports = _decode_open(item["open_list"])
            for report, reporter, reason in reports:
                self.changes.put(
                    REPORTS,
                    (c, report),
                    status=report_status,
                    resolved_at=at,
                    resolved_seq=seq,
                    decision=event.decision,
                    decided_by=event.actor,
                )
                self.changes.put(
                    COOLDOWNS,
                    (c, event.target_kind, event.target, reporter, reason),
                    resolved_at=at,
                    resolved_seq=seq,
                    outcome=outcome,
                )
                if reporter != item["target_author"]:  # self-reports do not make accuracy
                    self.changes.add(REPORTERS, (c, reporter), **{report_status: 1})
                    self.changes.add(PERIODS, (c, reporter, period), **{report_status: 1})
            seconds = seconds_between(item["opened_at"], at)
            if outcome == "approved":
                item["agreed_score"] += item["pending_score"]
            item.update(
                pending_score=0,
                open_list="[]",
                open_reports=0,
                resolved_at=at,
                resolved_seq=seq,
                resolution_seconds=seconds,
            )
            logged.update(
                reports_resolved=len(reports), opened_at=item["opened_at"], open_seconds=seconds
            )
        item.update(status=outcome, decision=event.decision, decided_by=event.actor, decided_at=at)
        self.put_item(key, item, seq)
        self.log(seq, event, **logged)

    def gone(self, seq: int, event: PostDeleted | ReplyDeleted | MemberLeft, key: Key) -> None:
        """The target was deleted (or the member removed): its open round ends as ignored."""
        item = self.item(key)
        if item is None:
            return
        at = event.occurred_at
        item["deleted_at"] = at if item["deleted_at"] is None else min(item["deleted_at"], at)
        if item["status"] == "pending":
            c = event.community
            reports = _decode_open(item["open_list"])
            for report, reporter, _ in reports:
                self.changes.put(
                    REPORTS, (c, report), status="ignored", resolved_at=at, resolved_seq=seq
                )
                if reporter != item["target_author"]:
                    self.changes.add(REPORTERS, (c, reporter), ignored=1)
            seconds = seconds_between(item["opened_at"], at)
            self.log(
                seq,
                event,
                kind="ignore",
                action="ignored",
                outcome="ignored",
                target_kind=key[1],
                target=key[2],
                target_author=item["target_author"],
                round=item["round"],
                reports_resolved=len(reports),
                opened_at=item["opened_at"],
                open_seconds=seconds,
                score=item["pending_score"] + item["agreed_score"],
                auto_hidden=item["auto_hidden_round"] == item["round"],
            )
            item.update(
                status="ignored",
                pending_score=0,
                open_list="[]",
                open_reports=0,
                resolved_at=at,
                resolved_seq=seq,
                resolution_seconds=seconds,
            )
        self.put_item(key, item, seq)

    # -- content state ----------------------------------------------------------------------

    def edited(self, seq: int, event: PostEdited) -> None:
        key = (event.community, "post", event.post)
        item = self.item(key)
        if item is None:
            return
        at = event.occurred_at
        item["edited_at"] = at if item["edited_at"] is None else max(item["edited_at"], at)
        self.put_item(key, item, seq)

    def hidden(self, seq: int, event: ContentHidden) -> None:
        key = (event.community, event.target_kind, event.target)
        item = self.item(key)
        self.log(
            seq,
            event,
            kind="hide",
            action="hidden",
            target_kind=event.target_kind,
            target=event.target,
            target_author=event.target_author,
            rule=event.rule,
            note=event.note,
            round=None if item is None else item["round"],
            score=None if item is None else item["pending_score"] + item["agreed_score"],
        )
        if item is None:
            return
        item.update(
            hidden=True, hidden_at=event.occurred_at, hidden_by=event.actor, hide_rule=event.rule
        )
        if event.actor == SYSTEM_ACTOR:
            item["auto_hidden_round"] = item["round"]
        self.put_item(key, item, seq)

    def restored(self, seq: int, event: ContentRestored) -> None:
        key = (event.community, event.target_kind, event.target)
        item = self.item(key)
        self.log(
            seq,
            event,
            kind="restore",
            action="restored",
            target_kind=event.target_kind,
            target=event.target,
            target_author=event.target_author,
            note=event.note,
            round=None if item is None else item["round"],
            score=None if item is None else item["pending_score"] + item["agreed_score"],
        )
        if item is None:
            return
        item.update(hidden=False, restored_at=event.occurred_at)
        self.put_item(key, item, seq)


def _content_key(event: ContentReported) -> Key:
    return (event.community, event.target_kind, event.target)


def _new_item(event: ContentReported, author: str, seq: int) -> Row:
    at = event.occurred_at
    return {
        "community": event.community,
        "target_kind": event.target_kind,
        "target": event.target,
        "target_author": author,
        "status": "pending",
        "priority": "low",
        "score": 0,
        "pending_score": 0,
        "agreed_score": 0,
        "round": 1,
        "reports": 0,
        "open_reports": 0,
        "open_list": "[]",
        "top_reason": event.reason,
        "first_reported_at": at,
        "last_reported_at": at,
        "opened_at": at,
        "opened_seq": seq,
        "resolved_at": None,
        "resolved_seq": None,
        "resolution_seconds": None,
        "decision": None,
        "decided_by": None,
        "decided_at": None,
        "edited_at": None,
        "deleted_at": None,
        "auto_hide_due_at_seq": None,
        "auto_hide_due_at": None,
        "auto_hide_score": None,
        "auto_hide_round": None,
        "hidden": False,
        "hidden_at": None,
        "hidden_by": None,
        "hide_rule": None,
        "auto_hidden_round": None,
        "restored_at": None,
        "updated_seq": seq,
    }
