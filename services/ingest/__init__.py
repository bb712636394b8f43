"""Ingest: the door for producers that do not speak NATS JetStream (see docs/ingest.md).

HTTP (``POST /v1/events``, :mod:`services.ingest.app`) and NATS request-reply
(``agora-ingest.v1``, :mod:`services.ingest.replier`) both hand requests to
:class:`services.ingest.handler.IngestHandler`: token -> grant, strict validation, grant check,
publish with de-duplication, one result per event.
"""

from services.ingest.app import create_app
from services.ingest.handler import EventResult, IngestHandler, IngestReply, Outcome
from services.ingest.replier import INGEST_SUBJECT, add_replier
from services.ingest.tokens import Grant, Grants, InvalidTokenConfig, hash_token, load_grants

__all__ = [
    "INGEST_SUBJECT",
    "EventResult",
    "Grant",
    "Grants",
    "IngestHandler",
    "IngestReply",
    "InvalidTokenConfig",
    "Outcome",
    "add_replier",
    "create_app",
    "hash_token",
    "load_grants",
]
