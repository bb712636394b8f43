"""Moderators' decisions: validated against the contract and the queue, then published.

One path for both transports (HTTP and NATS request-reply): the request is decoded with msgspec
(unknown fields refused), the moderator comes from their token, the target must be an item of the
moderation queue (its author is taken from there), and the ``moderation.decided`` event is
published through the reliable :class:`events.publisher.Publisher` -- acknowledged by the stream,
``Nats-Msg-Id`` = the event id.

The service assigns the event id; a client never chooses it (an id a client could choose is one it
could point at another event, to have its decision answered "duplicate" and dropped). A client
that wants to retry safely sends an idempotency key, ``id``: the event id is then
``keyed_event_id(id_key, "moderation", "decision", community, moderator, key)`` -- the same for the
same moderator, community and key, unpredictable to anyone without the deployment's id key, and
never the same for two moderators or communities. A retry with the same key and the same decision
is answered ``duplicate`` with the stored copy's sequence (within the stream's duplicate window);
the same key with a *different* decision is refused as a conflict (409), nothing published.
Without a key every request is a new decision with a fresh random id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from events.catalogue import Event, ModerationDecided
from events.codec import CODEC
from events.errors import EventError, InvalidEvent, PublishConflict, PublishError
from events.fields import CommunityId, ContentId, Decision, Note, TargetKind, UtcTime
from events.ids import keyed_event_id
from events.publisher import PublishResult, PublishStatus
from services.moderation.auth import Moderator
from services.moderation.errors import Conflict, InvalidDecision, Unavailable, UnknownTarget
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
    """Optional idempotency key (not the event id): retrying with the same key publishes once."""


class DecisionRequest(DecisionBody, kw_only=True, forbid_unknown_fields=True):
    """A decision as sent over NATS request-reply: the body plus the community."""

    community: CommunityId


class DecisionOutcome(msgspec.Struct, frozen=True):
    """What the service answers: the published event, and the item as it was before."""

    event_id: uuid.UUID
    status: str
    """``stored``, or ``duplicate`` (the same key and decision were stored before)."""
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

    async def stored(self, seq: int) -> tuple[str, bytes]:
        """The subject and payload the stream holds at ``seq``."""
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
    """Checks a decision against the queue and publishes it as ``moderation.decided``.

    ``id_key`` is the deployment's secret id key, from which idempotent decisions' ids are derived.
    """

    def __init__(
        self,
        lookup: QueueLookup,
        publisher: EventPublisher,
        *,
        id_key: bytes,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.lookup = lookup
        self.publisher = publisher
        self.id_key = id_key
        self.clock = clock

    def event_id(self, community: str, moderator: str, key: uuid.UUID | None) -> uuid.UUID:
        """The id of a decision: derived from the client's idempotency key, else random."""
        if key is None:
            return uuid.uuid4()
        return keyed_event_id(self.id_key, "moderation", "decision", community, moderator, str(key))

    async def decide(
        self, community: str, body: DecisionBody, moderator: Moderator
    ) -> DecisionOutcome:
        """Publish ``body`` as ``moderator``'s decision in ``community``.

        Raises InvalidDecision (the contract refuses it), Forbidden (the community is outside the
        moderator's scope), UnknownTarget (not in the queue), Conflict (the idempotency key was
        used for another decision) or Unavailable (the queue or the stream cannot be reached);
        nothing is published then.
        """
        community = _community(community)
        moderator.check(community)
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
                id=self.event_id(community, moderator.member, body.id),
                community=community,
                actor=moderator.member,
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
        except PublishConflict as conflict:
            result = await self._repeated(event, conflict)
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
            moderator=moderator.member,
            item_status=item.status,
        )

    async def _repeated(self, event: ModerationDecided, conflict: PublishConflict) -> PublishResult:
        """A retry's outcome: DUPLICATE if the stored event is this decision made earlier.

        A retry carries a new ``occurred_at``, so its bytes differ from the stored copy's and
        the publisher reports a conflict; the decision is the same when everything but the time
        is. Anything else under the id is a key reused for another decision: Conflict.
        """
        try:
            subject, data = await self.publisher.stored(conflict.seq)
        except PublishError as error:
            raise Unavailable(f"the decision was not confirmed by the stream: {error}") from error
        try:
            stored = CODEC.decode(data)
        except EventError:
            stored = None
        if (
            isinstance(stored, ModerationDecided)
            and msgspec.structs.replace(stored, occurred_at=event.occurred_at) == event
        ):
            return PublishResult(event.id, PublishStatus.DUPLICATE, subject, conflict.seq)
        raise Conflict(
            f"the idempotency key was used before for another decision (stored at stream "
            f"sequence {conflict.seq}); nothing was published: use a new key for a new decision"
        )


def error_payload(code: str, reason: str) -> dict[str, Any]:
    """The JSON body of a refusal, the same over HTTP and request-reply."""
    return {"ok": False, "error": code, "reason": reason}
