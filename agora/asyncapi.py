"""Generate the AsyncAPI 3.0 document of every subject Agora uses, from the code.

One channel per event type, ``agora.{community}.<type>``, whose message payload is that type's
JSON Schema exactly as :func:`events.schema.event_schemas` exports it (Draft 2020-12, declared
with ``schemaFormat``); and the ingest request-reply channel ``agora-ingest.v1`` with the reply
schema of :class:`services.ingest.handler.IngestReply`. Operations are written from a producer's
side: it *sends* events, and *sends* ingest requests, receiving a reply.

Regenerate the committed copy with::

    agora schema --asyncapi > docs/asyncapi.json

``tests/unit/test_asyncapi.py`` fails when the committed file differs from what this renders.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import msgspec

from events.catalogue import EVENT_TYPES, Event
from events.limits import ID_PATTERN, MAX_EVENT_BYTES
from events.schema import SCHEMA_DIALECT, event_schemas, union_schema
from events.subjects import ALL_SUBJECTS, PREFIX, STREAM
from services.ingest.handler import IngestReply
from services.ingest.replier import INGEST_QUEUE, INGEST_SUBJECT

ASYNCAPI_VERSION: Final = "3.0.0"
SCHEMA_FORMAT: Final = "application/schema+json;version=draft-2020-12"
"""The exported schemas are JSON Schema Draft 2020-12, not AsyncAPI's default (draft-07)."""

INGEST_CHANNEL: Final = "ingest"
INGEST_REPLY_CHANNEL: Final = "ingest.reply"

_MSG_ID_HEADERS: Final = {
    "type": "object",
    "required": ["Nats-Msg-Id"],
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "format": "uuid",
            "description": "The event's `id`: the stream drops a second publish of the same id "
            "within its duplicate window and acknowledges it as a duplicate.",
        }
    },
}

_INGEST_HEADERS: Final = {
    "type": "object",
    "required": ["Authorization"],
    "properties": {
        "Authorization": {
            "type": "string",
            "pattern": "^Bearer .+$",
            "description": "`Bearer <token>`: the producer's ingest token.",
        }
    },
}


def _summary(cls: type[Event]) -> str:
    return inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0].replace("\n", " ")


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/{kind}/{name}"}


def _event_parts(
    cls: type[Event], schema: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The channel, the operation and the message of one event type."""
    tag = cls.TYPE
    key = tag
    message = {
        "name": tag,
        "title": tag,
        "summary": _summary(cls),
        "contentType": "application/json",
        "headers": _MSG_ID_HEADERS,
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": schema},
    }
    channel = {
        "address": f"{PREFIX}.{{community}}.{tag}",
        "title": tag,
        "description": f"`{tag}` events of one community, captured by the stream `{STREAM}`.",
        "parameters": {"community": _ref("components/parameters", "community")},
        "messages": {key: _ref("components/messages", key)},
    }
    operation = {
        "action": "send",
        "title": f"Publish {tag}",
        "summary": f"Publish a `{tag}` event with JetStream and wait for the PubAck.",
        "channel": _ref("channels", key),
        "messages": [_ref(f"channels/{key}/messages", key)],
    }
    return channel, operation, message


def _ingest_parts() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The request and reply channels, the operation and the messages of ingest."""
    union = union_schema()
    request_schema = {
        "$schema": SCHEMA_DIALECT,
        "title": "Ingest request",
        "description": "One event, or a JSON array of events (a batch).",
        "oneOf": [
            {"$ref": "#/$defs/event"},
            {"type": "array", "items": {"$ref": "#/$defs/event"}, "minItems": 1},
        ],
        "$defs": {"event": union},
    }
    reply_schema = msgspec.json.schema(IngestReply)
    reply_schema["$schema"] = SCHEMA_DIALECT
    channels = {
        INGEST_CHANNEL: {
            "address": INGEST_SUBJECT,
            "title": "ingest requests",
            "description": "Core NATS request-reply (not a JetStream publish): the subject is "
            f"outside the stream's `{ALL_SUBJECTS}`. See docs/ingest.md.",
            "messages": {"ingestRequest": _ref("components/messages", "ingestRequest")},
        },
        INGEST_REPLY_CHANNEL: {
            "address": None,
            "title": "ingest replies",
            "description": "The reply subject (an inbox) the requester's NATS client sets.",
            "messages": {"ingestReply": _ref("components/messages", "ingestReply")},
        },
    }
    operation = {
        "action": "send",
        "title": "Ingest",
        "summary": "Publish events through the ingest service and receive a result per event.",
        "channel": _ref("channels", INGEST_CHANNEL),
        "messages": [_ref(f"channels/{INGEST_CHANNEL}/messages", "ingestRequest")],
        "reply": {
            "channel": _ref("channels", INGEST_REPLY_CHANNEL),
            "messages": [_ref(f"channels/{INGEST_REPLY_CHANNEL}/messages", "ingestReply")],
        },
        "bindings": {"nats": {"queue": INGEST_QUEUE, "bindingVersion": "0.1.0"}},
    }
    messages = {
        "ingestRequest": {
            "name": "ingestRequest",
            "title": "Ingest request",
            "contentType": "application/json",
            "headers": _INGEST_HEADERS,
            "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": request_schema},
        },
        "ingestReply": {
            "name": "ingestReply",
            "title": "Ingest reply",
            "summary": "`status` (as in HTTP) and one result per event, or an error.",
            "contentType": "application/json",
            "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": reply_schema},
        },
    }
    return channels, operation, messages


def asyncapi_document() -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of the event subjects and the ingest request-reply."""
    schemas = event_schemas()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls in EVENT_TYPES:
        key = cls.TYPE
        channel, operation, message = _event_parts(cls, schemas[cls.TYPE])
        channels[key] = channel
        operations[f"publish.{key}"] = operation
        messages[key] = message
    ingest_channels, ingest_operation, ingest_messages = _ingest_parts()
    channels.update(ingest_channels)
    operations[INGEST_CHANNEL] = ingest_operation
    messages.update(ingest_messages)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Agora events",
            "version": "1",
            "description": (
                "Every subject Agora events are published on, generated from the code "
                "(`agora schema --asyncapi`). Events are JSON, published with JetStream on "
                f"`{PREFIX}.<community>.<type>` to the append-only stream `{STREAM}` (which "
                f"captures `{ALL_SUBJECTS}`), with the header `Nats-Msg-Id` = the event id; "
                f"an encoded event is at most {MAX_EVENT_BYTES} bytes. Producers without a "
                f"JetStream client use the ingest service: HTTP or NATS request-reply on "
                f"`{INGEST_SUBJECT}`. Operations are written from a producer's side. "
                "See docs/events.md and docs/ingest.md."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "parameters": {
                "community": {
                    "description": f"A community id: {ID_PATTERN} (a single subject token).",
                    "examples": ["c42"],
                }
            },
        },
    }


def render_asyncapi() -> str:
    """Return the document as indented JSON text, ending with a newline."""
    return msgspec.json.format(msgspec.json.encode(asyncapi_document()), indent=2).decode() + "\n"
