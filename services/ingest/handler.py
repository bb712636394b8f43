"""One ingest request, whatever the transport: authenticate, validate, check the grant, publish.

Both doors (HTTP and NATS request-reply) hand the token and the raw body to
:meth:`IngestHandler.handle` and send back the :class:`IngestReply` it returns, so they answer
alike. The body is one event (a JSON object) or a batch (a JSON array of events); each event is
validated strictly with :meth:`events.codec.Codec.validate_json` (and its ``occurred_at`` against
this service's clock, :func:`events.codec.check_clock_skew`), checked against the producer's
grant and published with the reliable publisher (``Nats-Msg-Id`` = the event id, so a re-sent
event is answered ``duplicate``, not stored twice). ``duplicate`` is only said when the stored copy
is this very event; an id that names *another* stored event (a reused or squatted id) is answered
``conflict`` -- the event was not stored, re-sending it cannot store it, give it a new id.

Status policy (``IngestReply.status``, also the HTTP status):

* 401 -- no token, or an unknown one; nothing was looked at.
* 413 -- the body exceeds the byte limit, or the batch the event limit; nothing was published.
* 422 -- a batch that is not a JSON array of 1..max events; nothing was published.
* 503 -- at least one event could not be confirmed as stored (NATS unreachable, publish timed
  out): its result is ``failed``. Re-send the same request: what was stored is answered
  ``duplicate`` (within the stream's duplicate window).
* otherwise a batch answers 200 with one result per event, some perhaps ``rejected`` (breaks the
  contract) or ``refused`` (outside the token's grant); a single event answers with its own
  status: 200 stored or duplicate, 422 rejected, 403 refused, 409 conflict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import msgspec
import structlog

from events.catalogue import Event
from events.codec import CODEC, Codec, check_clock_skew
from events.errors import EventError, InvalidEvent
from events.limits import DEFAULT_MAX_FUTURE_SKEW
from events.publisher import PublishResult, PublishStatus
from services.ingest.tokens import Grant, Grants

_log = structlog.get_logger("services.ingest")

OK: Final = 200
FORBIDDEN: Final = 403
CONFLICT: Final = 409
UNAUTHORIZED: Final = 401
TOO_LARGE: Final = 413
UNPROCESSABLE: Final = 422
UNAVAILABLE: Final = 503
INTERNAL: Final = 500


class Outcome(enum.StrEnum):
    """What happened to one event of a request."""

    STORED = "stored"
    """Stored in the stream now; ``seq`` is its stream sequence."""
    DUPLICATE = "duplicate"
    """This event was already stored (same id, same bytes); ``seq`` is that copy's sequence."""
    CONFLICT = "conflict"
    """Another event is stored under this id (at ``seq``): this one was not stored. Use a new id."""
    REJECTED = "rejected"
    """Breaks the event contract; ``field`` and ``reason`` say how. Not sent."""
    REFUSED = "refused"
    """Outside the token's grant (``field`` is ``community`` or ``type``). Not sent."""
    FAILED = "failed"
    """Not confirmed as stored (NATS unreachable, timed out): send it again."""


class EventResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer for one event: its position in the request and what happened to it."""

    index: int
    status: Outcome
    id: str | None = None
    seq: int | None = None
    field: str | None = None
    reason: str | None = None


class IngestReply(msgspec.Struct, frozen=True, omit_defaults=True):
    """The answer to one request: an HTTP-like ``status`` and per-event ``results``.

    A request refused as a whole (401, 413, 422) has no results but an ``error`` code
    (``unauthorized``, ``too_large``, ``too_many_events``, ``malformed``, ``internal``) and a
    ``message`` in words.
    """

    status: int
    results: list[EventResult] | None = None
    error: str | None = None
    message: str | None = None


class EventPublisher(Protocol):
    """What the handler needs of :class:`events.publisher.Publisher`."""

    async def publish_many(self, events: Iterable[Event]) -> list[PublishResult]:
        """Publish events; return one result per event, in order."""
        ...


def refusal(status: int, error: str, message: str) -> IngestReply:
    """Return the reply for a request refused as a whole."""
    return IngestReply(status=status, error=error, message=message)


UNAUTHORIZED_REPLY: Final = refusal(
    UNAUTHORIZED, "unauthorized", "missing or unknown token (Authorization: Bearer <token>)"
)


class IngestHandler:
    """Validates, authorises and publishes the events of ingest requests.

    ``max_body_bytes`` bounds a request body, ``max_batch`` the events of one batch;
    ``max_future_skew`` is how far past the service's clock an ``occurred_at`` may lie (an event
    dated later is rejected, like any other contract violation).
    """

    def __init__(
        self,
        grants: Grants,
        publisher: EventPublisher,
        *,
        max_body_bytes: int,
        max_batch: int,
        codec: Codec = CODEC,
        max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
    ) -> None:
        self.grants: Final = grants
        self.publisher: Final = publisher
        self.max_body_bytes: Final = max_body_bytes
        self.max_batch: Final = max_batch
        self.codec: Final = codec
        self.max_future_skew: Final = max_future_skew
        self._batch = msgspec.json.Decoder(list[msgspec.Raw])

    def authenticate(self, token: str | None) -> Grant | None:
        """Return the grant of ``token``, or None when it is missing or unknown."""
        return self.grants.lookup(token)

    def body_too_large(self, size: int | None = None) -> IngestReply:
        """Return the 413 reply for a body over the byte limit (``size`` if known)."""
        got = f"{size} bytes" if size is not None else "more"
        return refusal(
            TOO_LARGE, "too_large", f"the body is {got}; the limit is {self.max_body_bytes} bytes"
        )

    async def handle(self, token: str | None, body: bytes) -> IngestReply:
        """Answer one request: ``body`` is one event (a JSON object) or a JSON array of them."""
        grant = self.authenticate(token)
        if grant is None:
            return UNAUTHORIZED_REPLY
        return await self.handle_granted(grant, body)

    async def handle_granted(self, grant: Grant, body: bytes) -> IngestReply:
        """Answer one request of an authenticated producer."""
        if len(body) > self.max_body_bytes:
            return self.body_too_large(len(body))
        single = not body.lstrip().startswith(b"[")
        if single:
            raws: list[bytes | memoryview] = [body]
        else:
            try:
                items = self._batch.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
                return refusal(
                    UNPROCESSABLE, "malformed", f"a batch must be a JSON array of events: {error}"
                )
            if not items:
                return refusal(UNPROCESSABLE, "malformed", "the batch is empty")
            if len(items) > self.max_batch:
                return refusal(
                    TOO_LARGE,
                    "too_many_events",
                    f"the batch has {len(items)} events; the limit is {self.max_batch}",
                )
            raws = [memoryview(item) for item in items]
        results = await self._process(grant, raws)
        return IngestReply(status=_status(results, single), results=results)

    async def _process(self, grant: Grant, raws: list[bytes | memoryview]) -> list[EventResult]:
        results: list[EventResult | None] = [None] * len(raws)
        accepted: list[tuple[int, Event]] = []
        now = datetime.now(UTC)  # the receive time: one clock reading per request
        for index, raw in enumerate(raws):
            try:
                event = self.codec.validate_json(raw)
                check_clock_skew(event, now, self.max_future_skew)
            except InvalidEvent as error:
                results[index] = EventResult(
                    index, Outcome.REJECTED, field=error.field, reason=error.reason
                )
                continue
            refused = grant.refusal(event.community, event.TYPE)
            if refused is not None:
                field, reason = refused
                results[index] = EventResult(
                    index, Outcome.REFUSED, str(event.id), field=field, reason=reason
                )
                continue
            accepted.append((index, event))
        if accepted:
            published = await self._publish([event for _, event in accepted])
            for (index, event), result in zip(accepted, published, strict=True):
                results[index] = _from_publish(index, event, result)
        done = [r for r in results if r is not None]
        _log.info(
            "ingest request",
            producer=grant.producer,
            events=len(done),
            **{o.value: sum(1 for r in done if r.status is o) for o in Outcome},
        )
        return done

    async def _publish(self, events: list[Event]) -> list[PublishResult]:
        """Publish; an error for the whole batch becomes one FAILED result per event."""
        try:
            return await self.publisher.publish_many(events)
        except EventError as error:
            return [
                PublishResult(event.id, PublishStatus.FAILED, "", error=str(error))
                for event in events
            ]


def _from_publish(index: int, event: Event, result: PublishResult) -> EventResult:
    """Map the publisher's outcome of one event to its ingest result."""
    if result.status is PublishStatus.STORED:
        return EventResult(index, Outcome.STORED, str(event.id), seq=result.seq)
    if result.status is PublishStatus.DUPLICATE:
        return EventResult(index, Outcome.DUPLICATE, str(event.id), seq=result.seq)
    if result.status is PublishStatus.CONFLICT:
        return EventResult(
            index, Outcome.CONFLICT, str(event.id), seq=result.seq, field="id", reason=result.error
        )
    return EventResult(
        index, Outcome.FAILED, str(event.id), reason=result.error or "not confirmed as stored"
    )


def _status(results: list[EventResult], single: bool) -> int:
    """The status of a processed request (see the module docstring)."""
    if any(r.status is Outcome.FAILED for r in results):
        return UNAVAILABLE
    if single:
        outcome = results[0].status
        if outcome is Outcome.REJECTED:
            return UNPROCESSABLE
        if outcome is Outcome.REFUSED:
            return FORBIDDEN
        if outcome is Outcome.CONFLICT:
            return CONFLICT
    return OK
