"""The NATS door of ingest: request-reply on ``agora-ingest.v1``, answered like the HTTP door.

A request is a core NATS request (not a JetStream publish) whose body is one event or a JSON
array of events, with the header ``Authorization: Bearer <token>``; the reply is the JSON
:class:`services.ingest.handler.IngestReply`. The subject is deliberately outside the stream's
``agora.>``: a request must not be stored as if it were an event.

It is a FastStream core subscriber in the queue group ``agora-ingest`` (several ingest processes
share the requests) with concurrent workers (a request waits for PubAcks; one slow request must
not hold up the others). Core NATS messages have no acknowledgement, so no ack policy applies:
the handler never raises -- every failure becomes a reply (500 for a bug) -- and a request that
gets no reply at all is, for the requester, a time-out to retry with the same event ids.
"""

from __future__ import annotations

from typing import Final

import msgspec
import structlog
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from services.ingest.app import bearer_token
from services.ingest.handler import INTERNAL, IngestHandler, refusal

_log = structlog.get_logger("services.ingest.replier")

INGEST_SUBJECT: Final = "agora-ingest.v1"
"""The request-reply subject of ingest (not captured by the ``AGORA`` stream)."""

INGEST_QUEUE: Final = "agora-ingest"
"""The queue group of ingest processes: each request goes to one of them."""

MAX_WORKERS: Final = 32
"""Requests one process handles at once."""

_encoder = msgspec.json.Encoder()


async def answer(handler: IngestHandler, body: bytes, headers: dict[str, str]) -> bytes:
    """Return the encoded reply to one request (never raises)."""
    token = bearer_token(headers.get("Authorization") or headers.get("authorization"))
    try:
        reply = await handler.handle(token, body)
    except Exception:
        _log.exception("ingest request failed")
        reply = refusal(INTERNAL, "internal", "internal error; nothing may have been stored")
    return _encoder.encode(reply)


def add_replier(
    broker: NatsBroker,
    handler: IngestHandler,
    *,
    subject: str = INGEST_SUBJECT,
    queue: str = INGEST_QUEUE,
    max_workers: int = MAX_WORKERS,
) -> None:
    """Subscribe ``broker`` to ingest requests on ``subject``, answered by ``handler``."""

    @broker.subscriber(
        subject,
        queue=queue,
        max_workers=max_workers,
        title="ingest",
        description="Publish one event or a batch; Authorization: Bearer <token>.",
    )
    async def ingest_request(msg: NatsMessage) -> bytes | None:
        if not msg.reply_to:
            _log.warning("ingest request without a reply subject ignored (use request-reply)")
            return None
        headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
        return await answer(handler, bytes(msg.body), headers)
