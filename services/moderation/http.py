"""The decisions API over HTTP (FastAPI).

``POST /v1/communities/{community}/decisions`` with ``Authorization: Bearer <moderator token>``
and a JSON body (:class:`services.moderation.decisions.DecisionBody`). Answers:

* ``201`` with the :class:`~services.moderation.decisions.DecisionOutcome` (``status`` stored or
  duplicate, ``seq``);
* ``401`` without a valid token, ``403`` for a community outside the token's scope, ``404`` for
  a target that is not in the queue, ``409`` for an idempotency key (``id``) used before for
  another decision, ``413`` for a body over :data:`MAX_BODY_BYTES`, ``422`` for a malformed
  decision, ``503`` when the queue or the stream cannot be reached -- each with
  ``{"ok": false, "error": code, "reason": text}``; nothing was published.

``GET /healthz`` answers 200 while the service runs. The body is decoded by msgspec (the same
decoder as request-reply), so both transports accept and refuse exactly the same decisions.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from events.limits import MAX_EVENT_BYTES
from services.moderation.auth import ModeratorTokens
from services.moderation.decisions import (
    DecisionBody,
    DecisionOutcome,
    DecisionService,
    decode_body,
    error_payload,
)
from services.moderation.errors import BodyTooLarge, ModerationError
from services.serving import json_errors

_SCHEMA: dict[str, Any] = msgspec.json.schema(DecisionBody)["$defs"]["DecisionBody"]
"""The body's JSON Schema, inlined into the OpenAPI document (its fields have no references)."""


MAX_BODY_BYTES: Final = MAX_EVENT_BYTES
"""The largest decision body read: a decision becomes one event, which cannot be larger."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The body; BodyTooLarge as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(status: int, content: Any) -> Response:
    return Response(msgspec.json.encode(content), status_code=status, media_type="application/json")


def create_app(service: DecisionService, tokens: ModeratorTokens) -> FastAPI:
    """The FastAPI application of the decisions API."""
    app = FastAPI(
        title="Agora moderation",
        description="Moderators' decisions, published as `moderation.decided` events.",
        version="1",
    )

    json_errors(app)

    @app.exception_handler(ModerationError)
    async def refused(_request: Request, error: ModerationError) -> Response:
        return _json(error.http_status, error_payload(error.code, error.reason))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness: the service answers."""
        return JSONResponse({"ok": True})

    @app.post(
        "/v1/communities/{community}/decisions",
        status_code=201,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _SCHEMA}}}
        },
        responses={401: {}, 403: {}, 404: {}, 409: {}, 413: {}, 422: {}, 503: {}},
    )
    async def decide(community: str, request: Request) -> Response:
        """Publish a moderator's decision on a reported target of ``community``."""
        moderator = tokens.from_header(request.headers.get("authorization"))
        body = decode_body(await _read_body(request, MAX_BODY_BYTES))
        outcome: DecisionOutcome = await service.decide(community, body, moderator)
        return _json(201, {"ok": True, **msgspec.structs.asdict(outcome)})

    return app
