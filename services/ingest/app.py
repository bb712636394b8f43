"""The HTTP door of ingest: a FastAPI app with ``POST /v1/events`` and an OpenAPI document.

The body is read here, as raw bytes and within the byte limit (a ``Content-Length`` over it is
refused before reading), and handed to :class:`services.ingest.handler.IngestHandler`; the reply
is encoded with msgspec. The OpenAPI document (``/openapi.json``, browsable at ``/docs``) takes the
event schemas from :func:`events.schema.union_schema`, the same ones ``agora schema`` exports.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

import msgspec
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from events.catalogue import EVENT_TYPES
from events.limits import MAX_EVENT_BYTES
from events.schema import union_schema
from services.ingest.handler import (
    INTERNAL,
    UNAUTHORIZED_REPLY,
    IngestHandler,
    IngestReply,
    refusal,
)
from services.serving import json_errors

_log = structlog.get_logger("services.ingest.app")

EVENTS_PATH: Final = "/v1/events"
"""Where producers POST one event or a batch."""

HEALTH_PATH: Final = "/v1/health"
"""200 while the service can reach NATS, 503 otherwise."""

JSON: Final = "application/json"
_COMPONENTS: Final = "#/components/schemas/"

_encoder = msgspec.json.Encoder()


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _reply(reply: IngestReply) -> Response:
    headers = {}
    if reply.status == UNAUTHORIZED_REPLY.status:
        headers["WWW-Authenticate"] = 'Bearer realm="agora-ingest"'
    elif reply.status == 503:
        headers["Retry-After"] = "1"
    return Response(_encoder.encode(reply), reply.status, headers, media_type=JSON)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """Return the body, or None as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _rehome(node: Any, prefix: str) -> Any:
    """Copy a JSON Schema, pointing its ``#/$defs/X`` references at ``prefix + X``."""
    if isinstance(node, dict):
        out = {k: _rehome(v, prefix) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = prefix + ref.removeprefix("#/$defs/")
        return out
    if isinstance(node, list):
        return [_rehome(v, prefix) for v in node]
    return node


def openapi_components() -> dict[str, Any]:
    """The schemas the OpenAPI document refers to: every event type, ``Event``, the reply."""
    union = union_schema()
    schemas: dict[str, Any] = _rehome(union["$defs"], _COMPONENTS)
    schemas["Event"] = {
        "title": union["title"],
        "description": union["description"],
        "oneOf": _rehome(union["oneOf"], _COMPONENTS),
        "discriminator": {
            "propertyName": "type",
            "mapping": {cls.TYPE: f"{_COMPONENTS}{cls.__name__}" for cls in EVENT_TYPES},
        },
    }
    _, reply = msgspec.json.schema_components([IngestReply], ref_template=_COMPONENTS + "{name}")
    schemas.update(copy.deepcopy(reply))
    return schemas


_RESPONSES: Final[dict[int | str, str]] = {
    200: "Processed. For a batch: one result per event, some perhaps rejected or refused. "
    "For a single event: stored, or duplicate (already stored; `seq` is the stored copy's).",
    401: "Missing or unknown token. Nothing was processed.",
    403: "Single event only: outside the token's grant (community or type). Not stored.",
    409: "Single event only: another event is already stored under its id (`results[0].seq`); "
    "this one was not stored. Give it a new id.",
    413: "The body exceeds the byte limit, or the batch the event limit. Nothing was stored.",
    422: "Single event: it breaks the contract (`results[0].field`, `.reason`). Batch: the body "
    "is not a JSON array of events. Not stored.",
    503: "At least one event could not be confirmed as stored (its result is `failed`): NATS "
    "is unreachable or did not acknowledge in time. Send the same request again; events "
    "already stored are then answered `duplicate`.",
}


def create_app(
    handler: IngestHandler,
    *,
    ready: Callable[[], bool] = lambda: True,
    title: str = "Agora ingest",
    version: str = "1",
) -> FastAPI:
    """Return the ingest HTTP app; ``ready`` says whether NATS is reachable (for health)."""
    app = FastAPI(
        title=title,
        version=version,
        description=(
            "Publish Agora events over HTTP: one event (a JSON object) or a batch (a JSON array) "
            "per request, authorised by a producer token. See docs/ingest.md."
        ),
    )
    json_errors(app)
    reply_ref = {"$ref": f"{_COMPONENTS}IngestReply"}
    event_ref = {"$ref": f"{_COMPONENTS}Event"}
    request_schema = {
        "oneOf": [
            event_ref,
            {"type": "array", "items": event_ref, "minItems": 1, "maxItems": handler.max_batch},
        ]
    }

    @app.post(
        EVENTS_PATH,
        summary="Publish one event or a batch of events",
        description=(
            f"The body (at most {handler.max_body_bytes} bytes) is one event or a JSON array of "
            f"1..{handler.max_batch} events, each at most {MAX_EVENT_BYTES} bytes encoded. "
            "Every event is validated strictly, checked against the token's grant and published "
            "with its `id` as the de-duplication key."
        ),
        response_class=Response,
        responses={
            code: {"description": text, "content": {JSON: {"schema": reply_ref}}}
            for code, text in _RESPONSES.items()
        },
        openapi_extra={
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {JSON: {"schema": request_schema}}},
        },
    )
    async def post_events(request: Request) -> Response:
        token = bearer_token(request.headers.get("authorization"))
        grant = handler.authenticate(token)
        if grant is None:
            return _reply(UNAUTHORIZED_REPLY)
        body = await _read_body(request, handler.max_body_bytes)
        if body is None:
            return _reply(handler.body_too_large())
        try:
            reply = await handler.handle_granted(grant, body)
        except Exception:
            _log.exception("ingest request failed", producer=grant.producer)
            reply = refusal(INTERNAL, "internal", "internal error; nothing may have been stored")
        return _reply(reply)

    @app.get(
        HEALTH_PATH,
        summary="Whether the service can reach NATS",
        response_class=Response,
        responses={
            200: {"description": "NATS is connected."},
            503: {"description": "NATS is not connected; publishing would fail."},
        },
    )
    async def health() -> Response:
        up = ready()
        body = {"status": 200 if up else 503, "nats": "connected" if up else "disconnected"}
        return Response(_encoder.encode(body), 200 if up else 503, media_type=JSON)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(openapi_components())
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A producer token."}
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
