"""Schema evolution: upcasting old versions, refusing future ones, writing only the current one.

Every real type is at v1 today, so these tests build a test-only catalogue in which
``post.created`` has moved on:

* v1 is the real :class:`events.PostCreated` (``title``, ``tags`` a list);
* v2 renamed ``title`` to ``headline``;
* v3 (a second codec) made ``tags`` a list of objects ``{"name": ..., "pinned": ...}``.

``reply.created`` at v2 shows a change of meaning without a change of shape: v1 bodies were plain
text, v2 bodies are Markdown, so the upcaster escapes Markdown in old bodies.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec
import pytest
from msgspec import Meta

from events import (
    Codec,
    Event,
    InvalidEvent,
    MemberJoined,
    PostCreated,
    UnknownEventType,
    UnsupportedVersion,
)
from events.codec import Payload
from events.fields import Body, MemberId, PostId, ReplyId, Tag, Title, Version

WHEN = datetime(2024, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {
    "id": "3f2b8c1e-5a4d-4e6f-9b7a-1c2d3e4f5a03",
    "community": "c42",
    "actor": "m1001",
    "occurred_at": "2024-03-14T09:26:53.589793Z",
}


class PostCreatedV2(Event, tag="post.created", frozen=True, kw_only=True):
    """v2 of post.created: ``title`` is now ``headline``."""

    TYPE: ClassVar[str] = "post.created"  # the real catalogue sets TYPE for its own types only

    post: PostId
    headline: Title
    body: Body = ""
    tags: Annotated[list[Tag], Meta(max_length=10)] = msgspec.field(default_factory=list)
    v: Version = 2


class TagRef(msgspec.Struct, frozen=True):
    """A tag of post.created v3."""

    name: Tag
    pinned: bool = False


class PostCreatedV3(Event, tag="post.created", frozen=True, kw_only=True):
    """v3 of post.created: tags are objects."""

    TYPE: ClassVar[str] = "post.created"

    post: PostId
    headline: Title
    body: Body = ""
    tags: Annotated[list[TagRef], Meta(max_length=10)] = msgspec.field(default_factory=list)
    v: Version = 3


class ReplyCreatedV2(Event, tag="reply.created", frozen=True, kw_only=True):
    """v2 of reply.created: same shape, but ``body`` is Markdown (it was plain text)."""

    TYPE: ClassVar[str] = "reply.created"

    reply: ReplyId
    post: PostId
    post_author: MemberId
    body: Body = ""
    v: Version = 2


def post_v1_to_v2(payload: Payload) -> Payload:
    """Rename ``title`` to ``headline``; tolerate a missing title (validation reports it)."""
    result = {k: v for k, v in payload.items() if k != "title"}
    if "title" in payload:
        result["headline"] = payload["title"]
    result["v"] = 2
    return result


def post_v2_to_v3(payload: Payload) -> Payload:
    """Turn each tag into ``{"name": tag}``."""
    tags = payload.get("tags", [])
    if isinstance(tags, list):
        tags = [{"name": tag} for tag in tags]
    return {**payload, "tags": tags, "v": 3}


def reply_v1_to_v2(payload: Payload) -> Payload:
    """Escape Markdown in a plain-text body."""
    body = payload.get("body", "")
    if isinstance(body, str):
        body = "".join("\\" + ch if ch in "\\*_`#[]<>" else ch for ch in body)
    return {**payload, "body": body, "v": 2}


V2 = Codec(
    [PostCreatedV2, ReplyCreatedV2, MemberJoined],
    {("post.created", 1): post_v1_to_v2, ("reply.created", 1): reply_v1_to_v2},
)
V3 = Codec(
    [PostCreatedV3, MemberJoined],
    {("post.created", 1): post_v1_to_v2, ("post.created", 2): post_v2_to_v3},
)


def raw(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


POST_V1: dict[str, Any] = {
    **ENVELOPE,
    "type": "post.created",
    "v": 1,
    "post": "p7",
    "title": "Sourdough on vacation?",
    "body": "How?",
    "tags": ["sourdough", "travel"],
}
POST_V2: dict[str, Any] = {
    **{k: v for k, v in POST_V1.items() if k != "title"},
    "v": 2,
    "headline": "Sourdough on vacation?",
}
REPLY_V1: dict[str, Any] = {
    **ENVELOPE,
    "type": "reply.created",
    "v": 1,
    "reply": "r31",
    "post": "p7",
    "post_author": "m1001",
    "body": "use *rye* flour",
}


def test_the_test_catalogue_is_at_the_versions_it_claims() -> None:
    assert V2.current == {"post.created": 2, "reply.created": 2, "member.joined": 1}
    assert V3.current["post.created"] == 3


def test_v1_payload_is_upcast_to_v2() -> None:
    event = V2.decode(raw(POST_V1))
    assert event == PostCreatedV2(
        id=uuid.UUID(ENVELOPE["id"]),
        community="c42",
        actor="m1001",
        occurred_at=WHEN,
        post="p7",
        headline="Sourdough on vacation?",
        body="How?",
        tags=["sourdough", "travel"],
    )
    assert event.v == 2


def test_upcasters_chain_from_v1_to_v3() -> None:
    event = V3.decode(raw(POST_V1))
    assert isinstance(event, PostCreatedV3)
    assert event.v == 3
    assert event.headline == "Sourdough on vacation?"
    assert event.tags == [TagRef("sourdough"), TagRef("travel")]
    assert V3.decode(raw(POST_V2)) == event


def test_current_version_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_slow_path(*args: object) -> Event:
        raise AssertionError("the current version must not need the slow path")

    monkeypatch.setattr(V2, "_decode_slow", no_slow_path)
    event = V2.decode(raw(POST_V2))
    assert isinstance(event, PostCreatedV2)
    assert event.headline == "Sourdough on vacation?"


def test_current_version_round_trips() -> None:
    event = V2.decode(raw(POST_V2))
    assert V2.decode(V2.encode(event)) == event
    assert V2.validate_json(V2.encode(event)) == event


def test_upcast_result_is_validated_like_any_payload() -> None:
    """An old payload that was invalid stays invalid: the error names the upcast field."""
    without_title = {k: v for k, v in POST_V1.items() if k != "title"}
    with pytest.raises(InvalidEvent) as info:
        V2.decode(raw(without_title))
    assert info.value.field == "headline"


def test_old_payload_without_v_is_version_1() -> None:
    payload = {k: v for k, v in POST_V1.items() if k != "v"}
    event = V2.decode(raw(payload))
    assert isinstance(event, PostCreatedV2)
    assert event.headline == POST_V1["title"]


def test_change_of_meaning_is_upcast() -> None:
    event = V2.decode(raw(REPLY_V1))
    assert isinstance(event, ReplyCreatedV2)
    assert event.body == "use \\*rye\\* flour"


def test_change_of_meaning_is_upcast_when_v_is_absent() -> None:
    payload = {k: v for k, v in REPLY_V1.items() if k != "v"}
    event = V2.decode(raw(payload))
    assert isinstance(event, ReplyCreatedV2)
    assert event.body == "use \\*rye\\* flour"


def test_future_version_is_refused() -> None:
    with pytest.raises(UnsupportedVersion) as info:
        V2.decode(raw({**POST_V2, "v": 3}))
    assert (info.value.field, info.value.version, info.value.current) == ("v", 3, 2)


def test_a_missing_upcaster_is_refused() -> None:
    codec = Codec([PostCreatedV3], {("post.created", 2): post_v2_to_v3})  # no v1 -> v2
    assert isinstance(codec.decode(raw(POST_V2)), PostCreatedV3)
    with pytest.raises(UnsupportedVersion) as info:
        codec.decode(raw(POST_V1))
    assert (info.value.field, info.value.version, info.value.current) == ("v", 1, 3)


def test_an_upcaster_that_forgets_to_set_v_is_refused() -> None:
    def forgetful(payload: Payload) -> Payload:
        return {**post_v1_to_v2(payload), "v": 1}

    codec = Codec([PostCreatedV2], {("post.created", 1): forgetful})
    with pytest.raises(InvalidEvent) as info:
        codec.decode(raw(POST_V1))
    assert type(info.value) is InvalidEvent
    assert info.value.field == "v"
    assert "did not set v" in info.value.reason


def test_an_upcaster_crashing_on_a_bad_old_payload_is_an_invalid_event() -> None:
    def strict_rename(payload: Payload) -> Payload:
        result = dict(payload)
        result["headline"] = result.pop("title")
        result["v"] = 2
        return result

    codec = Codec([PostCreatedV2], {("post.created", 1): strict_rename})
    with pytest.raises(InvalidEvent):
        codec.decode(raw({k: v for k, v in POST_V1.items() if k != "title"}))


def test_encode_refuses_to_write_an_old_version() -> None:
    old = PostCreatedV2(
        id=uuid.uuid4(),
        community="c42",
        actor="m1001",
        occurred_at=WHEN,
        post="p7",
        headline="Hello",
        v=1,
    )
    with pytest.raises(InvalidEvent) as info:
        V2.encode(old)
    assert info.value.field == "v"


def test_encode_refuses_the_old_struct() -> None:
    """The v1 class is not the codec's post.created any more."""
    v1 = PostCreated(
        id=uuid.uuid4(), community="c42", actor="m1001", occurred_at=WHEN, post="p7", title="Hi"
    )
    with pytest.raises(UnknownEventType):
        V2.encode(v1)


def test_validate_json_wants_the_current_version() -> None:
    """Producers write the current version; an old-shaped payload is refused, not upcast."""
    assert V2.validate_json(raw(POST_V2)).v == 2
    with pytest.raises(InvalidEvent):
        V2.validate_json(raw(POST_V1))


def test_unknown_fields_are_ignored_after_upcasting_too() -> None:
    event = V2.decode(raw({**POST_V1, "pinned": True}))
    assert isinstance(event, PostCreatedV2)
