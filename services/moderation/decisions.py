"""Moderators' decisions: validated against the contract and the queue, then published.

One path for both transports (HTTP and NATS request-reply): the request is decoded with msgspec
(unknown fields refused), the moderator comes from their token, the target must be an item of the
moderation queue (its author is taken from there), and the ``moderation.decided`` event is
published through the reliable :class:`events.publisher.Publisher` -- acknowledged by the stream,
``Nats-Msg-Id`` = the event id. A client that sends its own ``id`` may retry safely: the stream
stores the decision once (within its duplicate window) and the answer says ``duplicate``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from events.catalogue import Event, ModerationDecided
from events.errors import InvalidEvent, PublishError
from events.fields import CommunityId, ContentId, Decision, Note, TargetKind, UtcTime
from events.publisher import PublishResult
from services.moderation.errors import InvalidDecision, Unavailable, UnknownTarget
from services.moderation.readside import QueueLookup

DECIDE_SUBJECT = "_agora.moderation.v1.decide"
"""NATS request-reply subject of decisions; outside ``agora.>``, so the stream never stores it."""

DECIDE_QUEUE_GROUP = "agora-moderation"
"""Queue group of the request-reply subscribers: several service instances share the requests."""


class DecisionBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A decision as a moderator sends it over HTTP (the community is in the path)."""

    target_kind: TargetKind
    target: ContentId
    decision: Decision
    note: Note = ""
    until: UtcTime | None = None
    """End of a ``suspend``; required for it and only for it."""
    id: uuid.UUID | None = None
    """Optional idempotency key: the event id. Retrying with the same id publishes once."""


class DecisionRequest(DecisionBody, kw_only=True, forbid_unknown_fields=True):
    """A decision as sent over NATS request-reply: the body plus the community."""

    community: CommunityId


class DecisionOutcome(msgspec.Struct, frozen=True):
    """What the service answers: the published event, and the item as it was before."""

    event_id: uuid.UUID
    status: str
    """``stored`` or ``duplicate`` (the same id was stored before)."""
    seq: int | None
    """Stream sequence of the stored event: wait for it to read your write."""
    community: str
    target_kind: str
    target: str
    decision: str
    moderator: str
    item_status: str
    """The item's status before this decision (as far as the projection had folded)."""


class EventPublisher(Protocol):
    """What the service needs of :class:`events.publisher.Publisher`."""

    async def publish(self, event: Event) -> PublishResult:
        """Publish one event and return its acknowledged outcome."""
        ...


_BODY = msgspec.json.Decoder(DecisionBody)
_REQUEST = msgspec.json.Decoder(DecisionRequest)


def decode_body(data: bytes) -> DecisionBody:
    """Decode an HTTP body; InvalidDecision names the field and the problem."""
    try:
        return _BODY.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InvalidDecision(str(error)) from None


def decode_request(data: bytes) -> DecisionRequest:
    """Decode a request-reply payload; InvalidDecision names the field and the problem."""
    try:
        return _REQUEST.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InvalidDecision(str(error)) from None


def _community(value: str) -> str:
    try:
        return msgspec.convert(value, CommunityId)
    except msgspec.ValidationError as error:
        raise InvalidDecision(f"community: {error}") from None


class DecisionService:
    """Checks a decision against the queue and publishes it as ``moderation.decided``."""

    def __init__(
        self,
        lookup: QueueLookup,
        publisher: EventPublisher,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.lookup = lookup
        self.publisher = publisher
        self.clock = clock

    async def decide(self, community: str, body: DecisionBody, moderator: str) -> DecisionOutcome:
        """Publish ``body`` as ``moderator``'s decision in ``community``.

        Raises InvalidDecision (the contract refuses it), UnknownTarget (not in the queue) or
        Unavailable (the queue or the stream cannot be reached); nothing is published then.
        """
        community = _community(community)
        try:
            item = await self.lookup.item(community, body.target_kind, body.target)
        except Exception as error:
            raise Unavailable(f"cannot read the moderation queue: {error}") from error
        if item is None:
            raise UnknownTarget(
                f"{body.target_kind} {body.target!r} is not in the moderation queue of "
                f"{community!r} (nobody reported it, or the queue has not caught up yet)"
            )
        try:
            event = ModerationDecided(
                id=body.id or uuid.uuid4(),
                community=community,
                actor=moderator,
                occurred_at=self.clock(),
                target=body.target,
                target_kind=body.target_kind,
                target_author=item.target_author,
                decision=body.decision,
                note=body.note,
                until=body.until,
            )
            result = await self.publisher.publish(event)
        except InvalidEvent as error:
            raise InvalidDecision(str(error)) from None
        except PublishError as error:
            raise Unavailable(f"the decision was not confirmed by the stream: {error}") from error
        return DecisionOutcome(
            event_id=event.id,
            status=str(result.status),
            seq=result.seq,
            community=community,
            target_kind=body.target_kind,
            target=body.target,
            decision=body.decision,
            moderator=moderator,
            item_status=item.status,
        )


def error_payload(code: str, reason: str) -> dict[str, Any]:
    """The JSON body of a refusal, the same over HTTP and request-reply."""
    return {"ok": False, "error": code, "reason": reason}
