"""Agora's event contract: typed, validated community events and the client that publishes them.

Depends on msgspec and the standard library only; :mod:`events.publisher` is the one module that
touches nats-py.
"""

from events.catalogue import (
    EVENT_TYPES,
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
    acting_member,
)
from events.codec import CODEC, Codec, check_clock_skew, decode, encode, validate_json
from events.errors import (
    EventError,
    InvalidEvent,
    PayloadTooLarge,
    PublishError,
    PublishTimeout,
    UnknownEventType,
    UnsupportedVersion,
)
from events.ids import derived_event_id, new_event_id
from events.subjects import ALL_SUBJECTS, STREAM, subject_of

__all__ = [
    "ALL_SUBJECTS",
    "CODEC",
    "EVENT_TYPES",
    "STREAM",
    "AnswerAccepted",
    "AnyEvent",
    "Codec",
    "ContentHidden",
    "ContentReported",
    "ContentRestored",
    "Event",
    "EventError",
    "InvalidEvent",
    "MemberJoined",
    "MemberLeft",
    "ModerationDecided",
    "PayloadTooLarge",
    "PostCreated",
    "PostDeleted",
    "PostEdited",
    "PublishError",
    "PublishTimeout",
    "ReactionAdded",
    "ReactionRemoved",
    "ReplyCreated",
    "ReplyDeleted",
    "UnknownEventType",
    "UnsupportedVersion",
    "acting_member",
    "check_clock_skew",
    "decode",
    "derived_event_id",
    "encode",
    "new_event_id",
    "subject_of",
    "validate_json",
]
