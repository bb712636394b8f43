"""Errors of the moderation service, each with the HTTP status and the reply code it maps to."""

from __future__ import annotations

from typing import ClassVar

from services.errors import ServiceError


class ModerationError(ServiceError):
    """Root of the moderation service's errors; ``code`` names it in request-reply answers."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthorized(ModerationError):
    """No moderator token, or one that names no moderator."""

    code = "unauthorized"
    http_status = 401


class Forbidden(ModerationError):
    """The moderator's token does not cover the decision's community; nothing was published."""

    code = "forbidden"
    http_status = 403


class Conflict(ModerationError):
    """The decision's idempotency key was used before for another decision; nothing published."""

    code = "conflict"
    http_status = 409


class InvalidDecision(ModerationError, ValueError):
    """The decision is malformed or breaks the event contract; nothing was published."""

    code = "invalid"
    http_status = 422


class UnknownTarget(ModerationError):
    """The decision names a target that is not in the moderation queue; nothing was published."""

    code = "not_found"
    http_status = 404


class Unavailable(ModerationError):
    """The queue or the stream could not be reached; the decision may be retried with its id."""

    code = "unavailable"
    http_status = 503


class BodyTooLarge(ModerationError):
    """The request body is larger than any decision can be; it was not read to the end."""

    code = "too_large"
    http_status = 413
