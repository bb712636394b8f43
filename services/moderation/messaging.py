"""The service's NATS side, with FastStream: decisions by request-reply, reports as a doorbell.

Two subscribers, each with its delivery semantics chosen on purpose:

* ``_agora.moderation.v1.decide`` -- **core NATS request-reply** in the queue group
  ``agora-moderation`` (outside ``agora.>``: requests are not events and the stream must not store
  them). Core NATS has no acknowledgements; every outcome, refusals and failures included, is
  answered as JSON (``{"ok": true, ...}`` or ``{"ok": false, "error": code, "reason": ...}``), so a
  requester never waits for a timeout because of an exception. The moderator's token travels in
  the ``Authorization`` header.
* ``agora.*.content.reported`` -- a **JetStream** push consumer on the ``AGORA`` stream, bound with
  ``JStream(STREAM, declare=False)`` (the service never creates or updates the stream; FastStream's
  default declaration would *add subjects to an existing stream*), ``DeliverPolicy.NEW``,
  headers only, and ``AckPolicy.ACK_FIRST``: the message is only a doorbell telling the reactor
  that the stream moved (its sequence). The reactor's truth is the projection's marks, swept
  regularly anyway, so a lost or unprocessed doorbell costs latency, never a hide; redelivering or
  terminating it (FastStream's default ``REJECT_ON_ERROR``) would mean nothing.

Events are published with :class:`events.publisher.Publisher` on the broker's connection: each
acknowledged by the stream, ``Nats-Msg-Id`` = event id, ``Nats-Expected-Stream: AGORA``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from faststream import AckPolicy
from faststream.nats import DeliverPolicy, JStream, NatsBroker
from faststream.nats.annotations import NatsMessage

from events.subjects import STREAM
from services.moderation.auth import ModeratorTokens
from services.moderation.decisions import (
    DECIDE_QUEUE_GROUP,
    DECIDE_SUBJECT,
    DecisionService,
    decode_request,
    error_payload,
)
from services.moderation.errors import ModerationError
from services.moderation.reactor import Reactor

_log = structlog.get_logger("services.moderation.messaging")

REPORTS_SUBJECT = "agora.*.content.reported"
"""The reports the reactor's doorbell follows."""


async def answer_request(
    service: DecisionService, tokens: ModeratorTokens, data: bytes, headers: dict[str, str]
) -> bytes:
    """Handle one request-reply decision; always return the JSON answer (never raise)."""
    reply: dict[str, Any]
    try:
        moderator = tokens.from_header(headers.get("Authorization"))
        request = decode_request(data)
        outcome = await service.decide(request.community, request, moderator)
        reply = {"ok": True, **msgspec.structs.asdict(outcome)}
    except ModerationError as error:
        reply = error_payload(error.code, error.reason)
    except Exception as error:  # a bug must still answer, not leave the requester hanging
        _log.exception("decision request failed")
        reply = error_payload("error", f"internal error: {type(error).__name__}")
    return msgspec.json.encode(reply)


def register(
    broker: NatsBroker,
    service: DecisionService,
    tokens: ModeratorTokens,
    reactor: Reactor | None,
) -> None:
    """Add the decisions subscriber, and the reactor's doorbell if a reactor runs, to ``broker``."""

    @broker.subscriber(DECIDE_SUBJECT, queue=DECIDE_QUEUE_GROUP)
    async def decide(msg: NatsMessage) -> bytes:
        """Moderators' decisions by request-reply; answers JSON."""
        return await answer_request(service, tokens, msg.body, dict(msg.headers or {}))

    if reactor is None:
        return

    @broker.subscriber(
        REPORTS_SUBJECT,
        stream=JStream(STREAM, declare=False),
        deliver_policy=DeliverPolicy.NEW,
        headers_only=True,
        ack_policy=AckPolicy.ACK_FIRST,
    )
    async def doorbell(msg: NatsMessage) -> None:
        """A report was stored: wake the reactor once the projection has applied it."""
        metadata = msg.raw_message.metadata
        reactor.notify(int(metadata.sequence.stream))
