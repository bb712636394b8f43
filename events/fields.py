"""Constrained field types shared by the event catalogue.

Each alias carries its constraint and its description, so msgspec validates it on decode and the
exported JSON Schema documents it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from events.limits import (
    ID_PATTERN,
    MAX_BODY_LENGTH,
    MAX_ID_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TITLE_LENGTH,
    TEXT_PATTERN,
)

_ID = Meta(pattern=ID_PATTERN, min_length=1, max_length=MAX_ID_LENGTH)

CommunityId = Annotated[
    str, _ID, Meta(description="Community id; a NATS subject token.", examples=["c42"])
]
MemberId = Annotated[
    str,
    _ID,
    Meta(description="Member id; `system` is reserved for automation.", examples=["m1001"]),
]
PostId = Annotated[str, _ID, Meta(description="Post id, unique within the community.")]
ReplyId = Annotated[str, _ID, Meta(description="Reply id, unique within the community.")]
ContentId = Annotated[
    str, _ID, Meta(description="Id of a post, a reply or a member, as `target_kind` says.")
]
ReportId = Annotated[str, _ID, Meta(description="Report id, unique within the community.")]

UtcTime = Annotated[
    datetime,
    Meta(
        tz=True,
        description=(
            "RFC 3339 timestamp in UTC: `YYYY-MM-DDTHH:MM:SS[.ffffff]` then `Z` or `+00:00`, "
            "upper-case `T`, at most 6 fractional digits, from 1970-01-01 to 2999-12-31."
        ),
    ),
]
"""The codec checks the wire spelling (:data:`events.limits.TIME_PATTERN`) beside msgspec's
parse, which alone would accept a space for ``T``, ``-00:00`` and any number of digits."""

Text = Meta(pattern=TEXT_PATTERN)
"""Free text: no control character but TAB, LF and CR (PostgreSQL cannot store NUL)."""

Title = Annotated[str, Text, Meta(min_length=1, max_length=MAX_TITLE_LENGTH)]
Body = Annotated[str, Text, Meta(max_length=MAX_BODY_LENGTH)]
Note = Annotated[str, Text, Meta(max_length=MAX_NOTE_LENGTH)]
DisplayName = Annotated[str, Text, Meta(max_length=100)]
RuleName = Annotated[str, Text, Meta(max_length=100)]
Tag = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9.+#-]*$(?!\n)", max_length=MAX_TAG_LENGTH)]
Version = Annotated[int, Meta(ge=1, le=1000, description="Schema version of this event type.")]

ContentKind = Literal["post", "reply"]
"""What a reaction, an accepted answer or a hide targets."""

TargetKind = Literal["post", "reply", "member"]
"""What a report or a moderator decision targets."""

ReactionKind = Literal["like", "upvote", "downvote", "helpful", "funny", "thanks"]
"""Reaction kinds. `upvote`/`downvote` count for reputation; the others are engagement."""

ReportReason = Literal["spam", "inappropriate", "off_topic", "harassment", "illegal", "other"]
"""Why a member reported content (Discourse's flag types, plus harassment)."""

Decision = Literal["dismiss", "keep", "hide", "remove", "warn", "suspend", "ban"]
"""A moderator's decision. `dismiss`/`keep` reject the reports; the rest approve them."""

LeaveReason = Literal["left", "removed", "deleted"]
"""Why a member left: of their own accord, removed by staff, or account deleted."""

DeleteReason = Literal["author", "moderator", "spam", "duplicate", "other"]
"""Why content was deleted."""
