"""The error root of the event contract and its typed subclasses.

Every failure the contract or the publisher reports is an :class:`EventError`, so a caller can
catch one class; the subclasses say what went wrong and, for invalid input, which field.
"""

from __future__ import annotations


class EventError(Exception):
    """Root of every error raised by the ``events`` package."""


class InvalidEvent(EventError, ValueError):
    """An event (or raw payload) does not satisfy the contract; nothing was sent.

    It is also a ValueError, so msgspec reports one raised while decoding as a validation error.

    ``field`` is the dotted path of the offending field (``"$"`` for the whole payload) and
    ``reason`` says what is wrong with it, in words meant for the producer who sent it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field or repr(field)}: {reason}")
        self.field = field
        self.reason = reason


class UnknownEventType(InvalidEvent):
    """The ``type`` tag names no event type of the catalogue."""

    def __init__(self, type_: str) -> None:
        super().__init__("type", f"unknown event type {type_!r}")
        self.type = type_


class UnsupportedVersion(InvalidEvent):
    """The payload's schema version ``v`` is newer than this code knows, or has no upcaster."""

    def __init__(self, type_: str, version: int, current: int) -> None:
        super().__init__(
            "v", f"version {version} of {type_!r} is not supported (this code knows 1..{current})"
        )
        self.type = type_
        self.version = version
        self.current = current


class PayloadTooLarge(InvalidEvent):
    """The encoded event exceeds :data:`events.limits.MAX_EVENT_BYTES`."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__("$", f"encoded event is {size} bytes, the limit is {limit}")
        self.size = size
        self.limit = limit


class PublishError(EventError):
    """An event could not be stored in the stream; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PublishTimeout(PublishError):
    """No acknowledgement arrived within the publisher's deadline, retries included."""


class PublishConflict(PublishError):
    """The event's id already names a *different* message in the stream; this one was not stored.

    The stream answered "duplicate" (the id is in its duplicate window) but the message it holds
    at ``seq`` is not this event (another subject or other bytes): someone published another
    event under the same id first. Never a success: re-sending cannot store this event.
    """

    def __init__(self, event_id: object, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.event_id = event_id
        self.seq = seq
