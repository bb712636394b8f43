"""The ingest handler's logic, with a recording stand-in for the publisher (no NATS here).

What is checked: which events reach the publisher, the per-event results and the status policy.
The real publisher and NATS are exercised in tests/integration/test_ingest.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.catalogue import Event
from events.errors import PublishError
from events.publisher import PublishResult, PublishStatus
from events.subjects import subject_of
from services.ingest.app import bearer_token, create_app
from services.ingest.handler import IngestHandler, IngestReply, Outcome
from services.ingest.tokens import hash_token, parse_grants

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "v1"
TOKEN = "tok-forum-0123456789abcdef"


class FakePublisher:
    """Records what it is asked to publish; answers per event id from ``outcomes``."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.outcomes: dict[uuid.UUID, PublishResult] = {}
        self.raises: Exception | None = None

    async def publish_many(self, events: Iterable[Event]) -> list[PublishResult]:
        if self.raises is not None:
            raise self.raises
        results = []
        for event in events:
            self.published.append(event)
            default = PublishResult(
                event.id, PublishStatus.STORED, subject_of(event), seq=len(self.published)
            )
            results.append(self.outcomes.get(event.id, default))
        return results


def payload(type_: str = "post.created", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{type_}.json").read_text())
    data["id"] = str(uuid.uuid4())
    data.update(changes)
    return data


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def handler(publisher: FakePublisher) -> IngestHandler:
    grants = parse_grants(
        json.dumps(
            [
                {
                    "producer": "forum",
                    "sha256": hash_token(TOKEN),
                    "communities": ["c42"],
                    "types": ["post.created", "reply.created", "member.joined"],
                }
            ]
        )
    )
    return IngestHandler(grants, publisher, max_body_bytes=200_000, max_batch=5)


async def test_a_single_event_is_published_and_answered_stored(
    handler: IngestHandler, publisher: FakePublisher
) -> None:
    event = payload()
    reply = await handler.handle(TOKEN, json.dumps(event).encode())
    assert reply.status == 200
    assert reply.results is not None
    (result,) = reply.results
    assert (result.index, result.status, result.id, result.seq) == (0, "stored", event["id"], 1)
    assert [str(e.id) for e in publisher.published] == [event["id"]]
    assert publisher.published[0].TYPE == "post.created"


async def test_a_batch_with_one_bad_event_publishes_the_others(
    handler: IngestHandler, publisher: FakePublisher
) -> None:
    good1, good2 = payload(), payload("reply.created")
    bad = payload()
    del bad["title"]
    reply = await handler.handle(TOKEN, body(good1, bad, good2))
    assert reply.status == 200
    assert reply.results is not None
    assert [r.status for r in reply.results] == ["stored", "rejected", "stored"]
    assert [r.index for r in reply.results] == [0, 1, 2]
    rejected = reply.results[1]
    assert (rejected.field, rejected.reason, rejected.seq) == ("title", "is required", None)
    assert [str(e.id) for e in publisher.published] == [good1["id"], good2["id"]]


@pytest.mark.parametrize(
    ("change", "field", "reason_part"),
    [
        ({"type": "post.made"}, "type", "unknown event type 'post.made'"),
        ({"v": 9}, "v", "version 9"),
        ({"extra": 1}, "extra", "is not a field of this type"),
        ({"community": "c 42"}, "community", ""),
        ({"occurred_at": "2024-03-14T09:26:53+02:00"}, "occurred_at", ""),
        ({"body": "x" * 70_000}, "$", "the limit is 65536"),
        # Issue 14, findings 1 and 7: each answered 200 (stored) on main.
        ({"occurred_at": "9999-12-31T23:59:59Z"}, "occurred_at", "1970-01-01 to 2999-12-31"),
        ({"occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at", "1970-01-01 to 2999-12-31"),
        ({"occurred_at": "2024-03-14 09:26:53Z"}, "occurred_at", "upper-case T"),
        ({"title": "auto\u0000hide"}, "title", "control character"),
        ({"body": "a\u001bb"}, "body", "control character"),
        ({"id": "3F2B8C1E-5A4D-4E6F-9B7A-1C2D3E4F5A01"}, "id", "canonical UUID"),
        ({"id": "3f2b8c1e5a4d4e6f9b7a1c2d3e4f5a01"}, "id", "canonical UUID"),
    ],
)
async def test_rejections_carry_the_codec_field_and_reason(
    handler: IngestHandler,
    publisher: FakePublisher,
    change: dict[str, Any],
    field: str,
    reason_part: str,
) -> None:
    reply = await handler.handle(TOKEN, json.dumps(payload(**change)).encode())
    assert reply.status == 422
    assert reply.results is not None
    (result,) = reply.results
    assert result.status is Outcome.REJECTED
    assert result.field == field
    assert reason_part in (result.reason or "")
    assert publisher.published == []


async def test_events_outside_the_grant_are_refused(
    handler: IngestHandler, publisher: FakePublisher
) -> None:
    other_community = payload(community="c7")
    other_type = payload("content.hidden")
    allowed = payload()
    reply = await handler.handle(TOKEN, body(other_community, other_type, allowed))
    assert reply.status == 200
    assert reply.results is not None
    statuses = [(r.status, r.field, r.id) for r in reply.results]
    assert statuses == [
        ("refused", "community", other_community["id"]),
        ("refused", "type", other_type["id"]),
        ("stored", None, allowed["id"]),
    ]
    assert [str(e.id) for e in publisher.published] == [allowed["id"]]
    single = await handler.handle(TOKEN, json.dumps(payload(community="c7")).encode())
    assert single.status == 403


@pytest.mark.parametrize("token", [None, "", "wrong"])
async def test_a_missing_or_unknown_token_is_refused_before_anything(
    handler: IngestHandler, publisher: FakePublisher, token: str | None
) -> None:
    reply = await handler.handle(token, json.dumps(payload()).encode())
    assert (reply.status, reply.error, reply.results) == (401, "unauthorized", None)
    assert publisher.published == []


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (b"[1, 2", 422, "malformed"),
        (b"[]", 422, "malformed"),
        (b'[{"a": 1}, \xff]', 422, "malformed"),
        (body(*[payload() for _ in range(6)]), 413, "too_many_events"),
        (b" " * 200_001 + b"{}", 413, "too_large"),
    ],
)
async def test_requests_refused_as_a_whole(
    handler: IngestHandler, publisher: FakePublisher, raw: bytes, status: int, error: str
) -> None:
    reply = await handler.handle(TOKEN, raw)
    assert (reply.status, reply.error, reply.results) == (status, error, None)
    assert reply.message
    assert publisher.published == []


async def test_the_request_limits_are_inclusive(
    handler: IngestHandler, publisher: FakePublisher
) -> None:
    """The fixture's max_batch=5 and max_body_bytes=200_000, said literally: exactly that much
    is accepted (one more is refused, above)."""
    five = await handler.handle(TOKEN, body(*[payload() for _ in range(5)]))
    assert (five.status, five.error) == (200, None)
    assert five.results is not None and len(five.results) == 5
    batch = body(payload())  # padded between the elements: each event stays small
    padded = batch[:-1] + b" " * (200_000 - len(batch)) + b"]"
    assert len(padded) == 200_000
    reply = await handler.handle(TOKEN, padded)
    assert (reply.status, reply.error) == (200, None)
    assert len(publisher.published) == 6
    assert (await handler.handle(TOKEN, padded[:-1] + b" ]")).error == "too_large"


async def test_a_body_that_is_not_json_is_a_rejected_single_event(
    handler: IngestHandler,
) -> None:
    reply = await handler.handle(TOKEN, b"hello")
    assert reply.status == 422
    assert reply.results is not None
    assert (reply.results[0].status, reply.results[0].field) == ("rejected", "$")


async def test_a_batch_element_that_is_not_an_object_is_rejected_alone(
    handler: IngestHandler,
) -> None:
    reply = await handler.handle(TOKEN, b"[42, " + json.dumps(payload()).encode() + b"]")
    assert reply.status == 200
    assert reply.results is not None
    assert [r.status for r in reply.results] == ["rejected", "stored"]
    assert "expected a JSON object" in (reply.results[0].reason or "")


async def test_duplicates_report_the_stored_copys_sequence(
    handler: IngestHandler, publisher: FakePublisher
) -> None:
    event = payload()
    event_id = uuid.UUID(event["id"])
    publisher.outcomes[event_id] = PublishResult(event_id, PublishStatus.DUPLICATE, "s", seq=17)
    reply = await handler.handle(TOKEN, json.dumps(event).encode())
    assert reply.status == 200
    assert reply.results is not None
    assert (reply.results[0].status, reply.results[0].seq) == ("duplicate", 17)


async def test_an_unconfirmed_event_makes_the_request_503(
    handler: IngestHandler, publisher: FakePublisher
) -> None:
    lost, stored = payload(), payload()
    lost_id = uuid.UUID(lost["id"])
    publisher.outcomes[lost_id] = PublishResult(
        lost_id, PublishStatus.FAILED, "s", error="no acknowledgement within 1.0s"
    )
    reply = await handler.handle(TOKEN, body(lost, stored))
    assert reply.status == 503
    assert reply.results is not None
    assert [r.status for r in reply.results] == ["failed", "stored"]
    assert reply.results[0].reason == "no acknowledgement within 1.0s"


async def test_a_publisher_error_fails_every_event(
    handler: IngestHandler, publisher: FakePublisher
) -> None:
    publisher.raises = PublishError("the NATS connection is closed")
    bad = payload()
    del bad["post"]
    reply = await handler.handle(TOKEN, body(payload(), bad))
    assert reply.status == 503
    assert reply.results is not None
    assert [r.status for r in reply.results] == ["failed", "rejected"]
    assert "connection is closed" in (reply.results[0].reason or "")


def test_the_reply_encodes_compactly() -> None:
    reply = IngestReply(status=401, error="unauthorized", message="m")
    assert msgspec.json.decode(msgspec.json.encode(reply)) == {
        "status": 401,
        "error": "unauthorized",
        "message": "m",
    }


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_the_openapi_document_describes_the_endpoint(handler: IngestHandler) -> None:
    document = create_app(handler).openapi()
    operation = document["paths"]["/v1/events"]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert set(operation["responses"]) == {"200", "401", "403", "409", "413", "422", "503"}
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request["oneOf"][1]["maxItems"] == 5
    schemas = document["components"]["schemas"]
    mapping = schemas["Event"]["discriminator"]["mapping"]
    assert mapping["post.created"] == "#/components/schemas/PostCreated"

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    found = refs(document)
    assert "#/components/schemas/IngestReply" in found
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    assert schemas["PostCreated"]["additionalProperties"] is False


async def test_an_event_dated_past_the_clock_skew_is_rejected(
    publisher: FakePublisher, handler: IngestHandler
) -> None:
    """Issue 14: ``occurred_at`` may lie at most ``max_future_skew`` after the receive time.

    On main an event dated an hour ahead was stored.
    """
    ahead = datetime.now(UTC) + timedelta(hours=1)
    near = datetime.now(UTC) + timedelta(minutes=1)
    reply = await handler.handle(
        TOKEN,
        body(
            payload(occurred_at=ahead.isoformat().replace("+00:00", "Z")),
            payload(occurred_at=near.isoformat().replace("+00:00", "Z")),
        ),
    )
    assert reply.results is not None
    assert [r.status for r in reply.results] == ["rejected", "stored"]
    assert reply.results[0].field == "occurred_at"
    assert "clock skew" in (reply.results[0].reason or "")
    assert len(publisher.published) == 1


async def test_duplicate_keys_are_rejected(handler: IngestHandler) -> None:
    """Issue 14, finding 7: a key given twice was accepted (msgspec keeps the last)."""
    raw = json.dumps(payload()).encode()
    reply = await handler.handle(TOKEN, raw[:-1] + b', "title": "second"}')
    assert reply.status == 422
    assert reply.results is not None
    assert (reply.results[0].field, reply.results[0].status) == ("title", Outcome.REJECTED)
