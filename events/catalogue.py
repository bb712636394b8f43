"""The event catalogue: one msgspec Struct per event type, a tagged union on ``type``.

Every event is flat JSON. The common envelope (:class:`Event`) carries ``id``, ``type``, ``v``,
``community``, ``actor`` and ``occurred_at``; each type adds its own fields. Evolution follows
msgspec's rules: a new field gets a default; a change of meaning gets a new type or a new ``v``
with an upcaster in :mod:`events.codec`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta

from events.errors import InvalidEvent
from events.fields import (
    Body,
    CommunityId,
    ContentId,
    ContentKind,
    Decision,
    DeleteReason,
    DisplayName,
    LeaveReason,
    MemberId,
    Note,
    PostId,
    ReactionKind,
    ReplyId,
    ReportId,
    ReportReason,
    RuleName,
    Tag,
    TargetKind,
    Title,
    UtcTime,
    Version,
)
from events.limits import MAX_EVENT_TIME, MAX_TAGS, MIN_EVENT_TIME, SYSTEM_ACTOR

_ZERO = timedelta(0)
_OUT_OF_RANGE = (
    f"must lie from {MIN_EVENT_TIME:%Y-%m-%d} to {MAX_EVENT_TIME:%Y-%m-%d} "
    "(see docs/events.md, Limits)"
)


class Event(
    msgspec.Struct,
    tag_field="type",
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=False,
    # Events hold only scalars and lists of strings, so they can never be part of a reference
    # cycle; untracked, a decoded batch does not trigger the cyclic collector (~2 us/event).
    gc=False,
):
    """The envelope every event carries. Not published itself: use one of its subclasses."""

    id: Annotated[
        uuid.UUID,
        Meta(description="Unique event id (UUID); the stream's dedupe key (`Nats-Msg-Id`)."),
    ]
    community: Annotated[CommunityId, Meta(description="The community the event belongs to.")]
    actor: Annotated[
        MemberId, Meta(description="Member who caused the event; `system` for automation.")
    ]
    occurred_at: Annotated[
        UtcTime, Meta(description="Event time (RFC 3339, UTC): when it happened, not when sent.")
    ]
    v: Version = 1

    #: Wire tag of the type (``post.created``...); set below from each subclass's ``tag``.
    TYPE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        """Check the rules a field type cannot express; msgspec reports them as ValidationErrors."""
        tz = self.occurred_at.tzinfo
        if tz is not UTC and (tz is None or self.occurred_at.utcoffset() != _ZERO):
            raise InvalidEvent("occurred_at", "must be in UTC (offset Z or +00:00)")
        if not MIN_EVENT_TIME <= self.occurred_at <= MAX_EVENT_TIME:
            raise InvalidEvent("occurred_at", _OUT_OF_RANGE)


class MemberJoined(Event, tag="member.joined", frozen=True):
    """A member joined the community (signed up, was invited, or was imported)."""

    member: Annotated[MemberId, Meta(description="The member who joined.")]
    display_name: Annotated[
        DisplayName, Meta(description="Public name at join time; may be empty.")
    ] = ""

    def __post_init__(self) -> None:
        """Refuse the reserved actor id as a member."""
        super().__post_init__()
        if self.member == SYSTEM_ACTOR:
            raise InvalidEvent("member", f"{SYSTEM_ACTOR!r} is reserved for automation")


class MemberLeft(Event, tag="member.left", frozen=True):
    """A member left the community, was removed, or deleted their account."""

    member: Annotated[MemberId, Meta(description="The member who left.")]
    reason: Annotated[LeaveReason, Meta(description="How the member left.")] = "left"


class PostCreated(Event, tag="post.created", frozen=True):
    """A member started a topic: a post (a question, on Q&A communities)."""

    post: Annotated[PostId, Meta(description="The new post's id.")]
    title: Annotated[Title, Meta(description="Post title.")]
    body: Annotated[Body, Meta(description="Post body (Markdown).")] = ""
    tags: Annotated[
        list[Tag], Meta(max_length=MAX_TAGS, description="Lower-case tags, at most 10.")
    ] = msgspec.field(default_factory=list)


class PostEdited(Event, tag="post.edited", frozen=True):
    """A post's title, body or tags changed. Absent fields are unchanged."""

    post: Annotated[PostId, Meta(description="The edited post.")]
    author: Annotated[MemberId, Meta(description="The post's author (the actor may differ).")]
    title: Annotated[Title | None, Meta(description="New title, or null if unchanged.")] = None
    body: Annotated[Body | None, Meta(description="New body, or null if unchanged.")] = None
    tags: Annotated[
        Annotated[list[Tag], Meta(max_length=MAX_TAGS)] | None,
        Meta(description="New tags, or null if unchanged."),
    ] = None


class PostDeleted(Event, tag="post.deleted", frozen=True):
    """A post was deleted, with its replies. Reputation earned on it is reversed."""

    post: Annotated[PostId, Meta(description="The deleted post.")]
    author: Annotated[MemberId, Meta(description="The post's author.")]
    reason: Annotated[DeleteReason, Meta(description="Why it was deleted.")] = "author"


class ReplyCreated(Event, tag="reply.created", frozen=True):
    """A member replied to a post (an answer or a comment) or to another reply."""

    reply: Annotated[ReplyId, Meta(description="The new reply's id.")]
    post: Annotated[PostId, Meta(description="The post (topic) the reply belongs to.")]
    post_author: Annotated[MemberId, Meta(description="Author of that post.")]
    parent: Annotated[
        ContentId | None,
        Meta(description="The reply this one answers; null when it answers the post itself."),
    ] = None
    body: Annotated[Body, Meta(description="Reply body (Markdown).")] = ""


class ReplyDeleted(Event, tag="reply.deleted", frozen=True):
    """A reply was deleted. Reputation earned on it is reversed."""

    reply: Annotated[ReplyId, Meta(description="The deleted reply.")]
    post: Annotated[PostId, Meta(description="The post it belonged to.")]
    author: Annotated[MemberId, Meta(description="The reply's author.")]
    reason: Annotated[DeleteReason, Meta(description="Why it was deleted.")] = "author"


class ReactionAdded(Event, tag="reaction.added", frozen=True):
    """A member reacted to a post or a reply (like, up/down vote, helpful, ...)."""

    target: Annotated[ContentId, Meta(description="The post or reply reacted to.")]
    target_kind: Annotated[ContentKind, Meta(description="Whether `target` is a post or reply.")]
    target_author: Annotated[MemberId, Meta(description="Author of the target.")]
    kind: Annotated[ReactionKind, Meta(description="The reaction.")]
    post: Annotated[
        PostId | None,
        Meta(description="The post (topic) the target belongs to; null when it is the post."),
    ] = None
    anonymous: Annotated[
        bool,
        Meta(
            description=(
                "True when the source does not say who reacted: `actor` is then a placeholder "
                "unique to this reaction (imported votes), not a member; the reaction counts "
                "for its target and its author, and as nobody's activity."
            )
        ),
    ] = False


class ReactionRemoved(Event, tag="reaction.removed", frozen=True):
    """A member withdrew a reaction they had added."""

    target: Annotated[ContentId, Meta(description="The post or reply.")]
    target_kind: Annotated[ContentKind, Meta(description="Whether `target` is a post or reply.")]
    target_author: Annotated[MemberId, Meta(description="Author of the target.")]
    kind: Annotated[ReactionKind, Meta(description="The reaction withdrawn.")]
    post: Annotated[
        PostId | None,
        Meta(description="The post (topic) the target belongs to; null when it is the post."),
    ] = None
    anonymous: Annotated[
        bool,
        Meta(description="As on `reaction.added`: `actor` is a placeholder, not a member."),
    ] = False


class AnswerAccepted(Event, tag="answer.accepted", frozen=True):
    """The asker (or staff) marked a reply as the accepted answer of a post."""

    post: Annotated[PostId, Meta(description="The question.")]
    post_author: Annotated[MemberId, Meta(description="The question's author.")]
    reply: Annotated[ReplyId, Meta(description="The accepted reply.")]
    reply_author: Annotated[MemberId, Meta(description="The accepted reply's author.")]


class ContentReported(Event, tag="content.reported", frozen=True):
    """A member flagged a post, a reply or a member for moderators. The actor is the reporter."""

    report: Annotated[ReportId, Meta(description="The report's id.")]
    target: Annotated[ContentId, Meta(description="What is reported.")]
    target_kind: Annotated[TargetKind, Meta(description="post, reply or member.")]
    target_author: Annotated[
        MemberId, Meta(description="Author of the target (the member itself for a member).")
    ]
    reason: Annotated[ReportReason, Meta(description="Why it is reported.")]
    note: Annotated[Note, Meta(description="The reporter's free-text note.")] = ""


class ModerationDecided(Event, tag="moderation.decided", frozen=True):
    """A moderator decided on a reported target; resolves all its open reports.

    The actor is the moderator.
    """

    target: Annotated[ContentId, Meta(description="The post, reply or member decided on.")]
    target_kind: Annotated[TargetKind, Meta(description="post, reply or member.")]
    target_author: Annotated[MemberId, Meta(description="Author of the target.")]
    decision: Annotated[Decision, Meta(description="What the moderator decided.")]
    note: Annotated[Note, Meta(description="The moderator's note.")] = ""
    until: Annotated[
        UtcTime | None, Meta(description="End of a `suspend` decision; null otherwise.")
    ] = None

    def __post_init__(self) -> None:
        """A suspension needs an end; other decisions must not have one."""
        super().__post_init__()
        if (self.decision == "suspend") != (self.until is not None):
            raise InvalidEvent("until", "required for decision 'suspend' and only for it")
        if self.until is not None:
            if self.until.utcoffset() != _ZERO:
                raise InvalidEvent("until", "must be in UTC (offset Z or +00:00)")
            if not MIN_EVENT_TIME <= self.until <= MAX_EVENT_TIME:
                raise InvalidEvent("until", _OUT_OF_RANGE)


class ContentHidden(Event, tag="content.hidden", frozen=True):
    """Content was hidden pending review (automatic moderation; actor `system`)."""

    target: Annotated[ContentId, Meta(description="The hidden post or reply.")]
    target_kind: Annotated[ContentKind, Meta(description="post or reply.")]
    target_author: Annotated[MemberId, Meta(description="Author of the target.")]
    rule: Annotated[RuleName, Meta(description="The rule that hid it, e.g. `auto_hide.score`.")]
    note: Annotated[Note, Meta(description="Details, e.g. the score that crossed.")] = ""


class ContentRestored(Event, tag="content.restored", frozen=True):
    """Hidden content was made visible again (automatic, or after review)."""

    target: Annotated[ContentId, Meta(description="The restored post or reply.")]
    target_kind: Annotated[ContentKind, Meta(description="post or reply.")]
    target_author: Annotated[MemberId, Meta(description="Author of the target.")]
    note: Annotated[Note, Meta(description="Why it was restored.")] = ""


AnyEvent = (
    MemberJoined
    | MemberLeft
    | PostCreated
    | PostEdited
    | PostDeleted
    | ReplyCreated
    | ReplyDeleted
    | ReactionAdded
    | ReactionRemoved
    | AnswerAccepted
    | ContentReported
    | ModerationDecided
    | ContentHidden
    | ContentRestored
)
"""The tagged union of every current event type; what the codec decodes to."""

EVENT_TYPES: tuple[type[Event], ...] = (
    MemberJoined,
    MemberLeft,
    PostCreated,
    PostEdited,
    PostDeleted,
    ReplyCreated,
    ReplyDeleted,
    ReactionAdded,
    ReactionRemoved,
    AnswerAccepted,
    ContentReported,
    ModerationDecided,
    ContentHidden,
    ContentRestored,
)
"""Every event type, in catalogue order."""

for _cls in EVENT_TYPES:
    _cls.TYPE = str(_cls.__struct_config__.tag)


def acting_member(event: Event) -> str | None:
    """The member whose activity ``event`` is: its actor, or None.

    None for automation (the ``system`` actor) and for an anonymous reaction, whose actor is a
    placeholder for a member the source does not name. Projections count activity (active
    members, reactions given, a voter's cost) only for the member this returns.
    """
    actor = event.actor
    if actor == SYSTEM_ACTOR:
        return None
    # By exact type: this runs for every event of every fold, and isinstance of a union cost
    # more than the rest of the function.
    if type(event) in _MAY_BE_ANONYMOUS and event.anonymous:  # type: ignore[attr-defined]
        return None
    return actor


_MAY_BE_ANONYMOUS: frozenset[type[Event]] = frozenset({ReactionAdded, ReactionRemoved})
