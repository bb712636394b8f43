"""The codec: round trips, strict and lenient validation, and every error naming its field."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import any_event, event_of, ids

from events import (
    CODEC,
    EVENT_TYPES,
    Event,
    InvalidEvent,
    MemberJoined,
    ModerationDecided,
    PayloadTooLarge,
    PostCreated,
    UnknownEventType,
    UnsupportedVersion,
    decode,
    encode,
    validate_json,
)
from events.limits import MAX_EVENT_BYTES, SYSTEM_ACTOR
from events.subjects import (
    ALL_SUBJECTS,
    STREAM,
    community_filter,
    parse_subject,
    subject,
    subject_of,
)

WHEN = datetime(2024, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)

POST: dict[str, Any] = {
    "id": "3f2b8c1e-5a4d-4e6f-9b7a-1c2d3e4f5a03",
    "type": "post.created",
    "v": 1,
    "community": "c42",
    "actor": "m1001",
    "occurred_at": "2024-03-14T09:26:53.589793Z",
    "post": "p7",
    "title": "Sourdough on vacation?",
    "body": "How?",
    "tags": ["sourdough"],
}

DECISION: dict[str, Any] = {
    **{k: POST[k] for k in ("id", "community", "actor", "occurred_at")},
    "type": "moderation.decided",
    "target": "m1003",
    "target_kind": "member",
    "target_author": "m1003",
    "decision": "suspend",
    "until": "2024-03-22T08:00:00Z",
}

JOIN: dict[str, Any] = {
    **{k: POST[k] for k in ("id", "community", "actor", "occurred_at")},
    "type": "member.joined",
    "member": "m1001",
}


def raw(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def post(**changes: Any) -> dict[str, Any]:
    """The POST payload with some keys replaced (a value of ... drops the key)."""
    result = {**POST, **changes}
    return {k: v for k, v in result.items() if v is not ...}


def make_post(**changes: Any) -> PostCreated:
    values: dict[str, Any] = {
        "id": uuid.UUID(POST["id"]),
        "community": "c42",
        "actor": "m1001",
        "occurred_at": WHEN,
        "post": "p7",
        "title": "Sourdough on vacation?",
    }
    values.update(changes)
    return PostCreated(**values)


# -- round trips ---------------------------------------------------------------------------------


@settings(max_examples=300)
@given(any_event())
def test_encode_decode_round_trip(event: Event) -> None:
    data = encode(event)
    assert decode(data) == event
    assert type(decode(data)) is type(event)


@settings(max_examples=150)
@given(any_event())
def test_validate_json_accepts_encoded_events(event: Event) -> None:
    assert validate_json(encode(event)) == event


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.TYPE)
@settings(max_examples=25)
@given(data=st.data())
def test_every_type_round_trips(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(event_of(cls))
    assert type(event) is cls
    payload = json.loads(encode(event))
    assert payload["type"] == cls.TYPE
    assert payload["v"] == CODEC.current[cls.TYPE]
    assert decode(encode(event)) == event


def test_encoded_times_are_utc_with_microseconds() -> None:
    payload = json.loads(encode(make_post()))
    assert payload["occurred_at"] == "2024-03-14T09:26:53.589793Z"


def test_decode_accepts_the_plus_zero_offset_and_normalises_it() -> None:
    event = decode(raw(post(occurred_at="2024-03-14T09:26:53.589793+00:00")))
    assert event.occurred_at == WHEN
    assert json.loads(encode(event))["occurred_at"].endswith("Z")


def test_defaults_fill_absent_optional_fields() -> None:
    event = decode(raw(post(v=..., body=..., tags=...)))
    assert isinstance(event, PostCreated)
    assert (event.v, event.body, event.tags) == (1, "", [])


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = raw(POST)
    assert decode(bytearray(data)) == decode(memoryview(data)) == decode(data)


# -- unknown fields: lenient decode, strict validate_json ----------------------------------------


def test_decode_ignores_unknown_fields_for_forward_compatibility() -> None:
    data = raw(post(pinned=True))
    assert decode(data) == decode(raw(POST))


def test_validate_json_refuses_unknown_fields() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_json(raw(post(pinned=True)))
    assert info.value.field == "pinned"
    assert "not a field" in info.value.reason


# -- errors name their field ---------------------------------------------------------------------

CASES = [
    pytest.param(raw(post(title=...)), InvalidEvent, "title", id="missing required field"),
    pytest.param(raw(post(community=...)), InvalidEvent, "community", id="missing envelope field"),
    pytest.param(raw(post(type=...)), InvalidEvent, "type", id="missing type"),
    pytest.param(raw(post(title=42)), InvalidEvent, "title", id="wrong type"),
    pytest.param(raw(post(actor=["m1"])), InvalidEvent, "actor", id="wrong type in envelope"),
    pytest.param(raw(post(type=7)), InvalidEvent, "type", id="type not a string"),
    pytest.param(raw(post(community="c.42")), InvalidEvent, "community", id="id with a dot"),
    pytest.param(raw(post(post="p>")), InvalidEvent, "post", id="id with a wildcard"),
    pytest.param(raw(post(actor="m 1")), InvalidEvent, "actor", id="id with a space"),
    pytest.param(raw(post(post="p" * 65)), InvalidEvent, "post", id="id too long"),
    pytest.param(raw(post(actor="")), InvalidEvent, "actor", id="empty id"),
    pytest.param(raw(post(id="42")), InvalidEvent, "id", id="event id not a uuid"),
    pytest.param(raw(post(title="")), InvalidEvent, "title", id="empty title"),
    pytest.param(raw(post(type="post.exploded")), UnknownEventType, "type", id="unknown type"),
    pytest.param(
        raw(post(occurred_at="2024-03-14T11:26:53+02:00")),
        InvalidEvent,
        "occurred_at",
        id="non-UTC occurred_at",
    ),
    pytest.param(
        raw(post(occurred_at="2024-03-14T09:26:53")),
        InvalidEvent,
        "occurred_at",
        id="naive occurred_at",
    ),
    pytest.param(
        raw(post(occurred_at="2024-02-30T09:26:53Z")),
        InvalidEvent,
        "occurred_at",
        id="impossible date",
    ),
    pytest.param(
        raw({**DECISION, "until": None}), InvalidEvent, "until", id="until missing for suspend"
    ),
    pytest.param(
        raw({k: v for k, v in DECISION.items() if k != "until"}),
        InvalidEvent,
        "until",
        id="until absent for suspend",
    ),
    pytest.param(
        raw({**DECISION, "decision": "warn"}), InvalidEvent, "until", id="until set for warn"
    ),
    pytest.param(
        raw({**DECISION, "until": "2024-03-22T08:00:00-05:00"}),
        InvalidEvent,
        "until",
        id="non-UTC until",
    ),
    pytest.param(
        raw({**DECISION, "decision": "shame"}), InvalidEvent, "decision", id="bad literal"
    ),
    pytest.param(
        raw({**JOIN, "member": SYSTEM_ACTOR}), InvalidEvent, "member", id="reserved member system"
    ),
    pytest.param(raw(post(v=2)), UnsupportedVersion, "v", id="future version"),
    pytest.param(raw(post(v=10**6)), UnsupportedVersion, "v", id="far future version"),
    pytest.param(raw(post(v=0)), InvalidEvent, "v", id="version zero"),
    pytest.param(raw(post(v="1")), InvalidEvent, "v", id="version not an int"),
    pytest.param(raw(post(v=True)), InvalidEvent, "v", id="version a bool"),
    pytest.param(
        raw(post(body="x" * MAX_EVENT_BYTES)), PayloadTooLarge, "$", id="oversize payload"
    ),
    pytest.param(b"{'type': 'post.created'}", InvalidEvent, "$", id="not JSON"),
    pytest.param(raw(POST)[:-1], InvalidEvent, "$", id="truncated JSON"),
    pytest.param(b"\xff\xfe{}", InvalidEvent, "$", id="not UTF-8"),
    pytest.param(b"", InvalidEvent, "$", id="empty input"),
    pytest.param(raw([POST]), InvalidEvent, "$", id="JSON array"),
    pytest.param(raw("post.created"), InvalidEvent, "$", id="JSON string"),
    pytest.param(raw(post(tags=["t"] * 11)), InvalidEvent, "tags", id="too many tags"),
    pytest.param(raw(post(tags=["ok", "Not-Lower"])), InvalidEvent, "tags[1]", id="bad tag"),
    pytest.param(raw(post(tags="a,b")), InvalidEvent, "tags", id="tags not a list"),
]


@pytest.mark.parametrize("decoder", [decode, validate_json], ids=["decode", "validate_json"])
@pytest.mark.parametrize(("data", "error", "field"), CASES)
def test_invalid_payload_names_its_field(
    decoder: Callable[[bytes], Event], data: bytes, error: type[InvalidEvent], field: str
) -> None:
    with pytest.raises(error) as info:
        decoder(data)
    assert type(info.value) is error
    assert info.value.field == field
    assert info.value.reason
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("decoder", [decode, validate_json], ids=["decode", "validate_json"])
def test_invalid_utf8_inside_a_string_is_an_invalid_event(
    decoder: Callable[[bytes], Event],
) -> None:
    with pytest.raises(InvalidEvent) as info:
        decoder(raw(POST).replace(b"Sourdough", b"Sourd\xffugh"))
    assert info.value.field == "$"


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"community": "c42\n"}, "community"), ({"tags": ["sourdough\n"]}, "tags[0]")],
    ids=["id", "tag"],
)
def test_a_trailing_newline_is_refused(changes: dict[str, Any], field: str) -> None:
    """A newline in a community id would end up in the NATS subject."""
    with pytest.raises(InvalidEvent) as info:
        decode(raw(post(**changes)))
    assert info.value.field == field


def test_unknown_type_error_carries_the_type() -> None:
    with pytest.raises(UnknownEventType) as info:
        decode(raw(post(type="post.exploded")))
    assert info.value.type == "post.exploded"


def test_unsupported_version_error_carries_versions() -> None:
    with pytest.raises(UnsupportedVersion) as info:
        decode(raw(post(v=2)))
    assert (info.value.type, info.value.version, info.value.current) == ("post.created", 2, 1)


def test_payload_too_large_error_carries_sizes() -> None:
    data = raw(post(body="x" * MAX_EVENT_BYTES))
    with pytest.raises(PayloadTooLarge) as info:
        decode(data)
    assert (info.value.size, info.value.limit) == (len(data), MAX_EVENT_BYTES)


def test_the_size_limit_is_inclusive() -> None:
    """docs/events.md: 64 KiB. Said literally, so the test does not move with the constant."""
    data = raw(post(body=""))
    padded = data[:-1] + b" " * (65_536 - len(data)) + b"}"
    assert len(padded) == 65_536
    assert isinstance(decode(padded), PostCreated)
    assert isinstance(validate_json(padded), PostCreated)
    over = data[:-1] + b" " * (65_537 - len(data)) + b"}"
    for decoder in (decode, validate_json):
        with pytest.raises(PayloadTooLarge) as info:
            decoder(over)
        assert (info.value.size, info.value.limit) == (65_537, 65_536)


REPORT: dict[str, Any] = {
    **{k: POST[k] for k in ("id", "community", "actor", "occurred_at")},
    "type": "content.reported",
    "report": "q1",
    "target": "p7",
    "target_kind": "post",
    "target_author": "m1002",
    "reason": "spam",
}

LIMITS = [
    # (payload with a field at its documented maximum, the field, one more, the error's field)
    pytest.param(POST, "community", "c" * 64, "c" * 65, "community", id="community 64"),
    pytest.param(POST, "actor", "m" * 64, "m" * 65, "actor", id="actor 64"),
    pytest.param(POST, "post", "p" * 64, "p" * 65, "post", id="post id 64"),
    pytest.param(REPORT, "report", "q" * 64, "q" * 65, "report", id="report id 64"),
    pytest.param(POST, "title", "t" * 300, "t" * 301, "title", id="title 300"),
    pytest.param(POST, "body", "b" * 32_000, "b" * 32_001, "body", id="body 32000"),
    pytest.param(POST, "tags", ["t"] * 10, ["t"] * 11, "tags", id="tags 10"),
    pytest.param(POST, "tags", ["t" * 50], ["t" * 51], "tags[0]", id="tag 50"),
    pytest.param(REPORT, "note", "n" * 2_000, "n" * 2_001, "note", id="report note 2000"),
    pytest.param(DECISION, "note", "n" * 2_000, "n" * 2_001, "note", id="decision note 2000"),
]


@pytest.mark.parametrize(("base", "name", "at_most", "over", "field"), LIMITS)
def test_a_documented_limit_accepts_its_maximum_and_refuses_one_more(
    base: dict[str, Any], name: str, at_most: Any, over: Any, field: str
) -> None:
    """The limits of docs/events.md, said literally: a loosened or tightened limit fails here."""
    for decoder in (decode, validate_json):
        event = decoder(raw({**base, name: at_most}))
        assert getattr(event, name) == at_most
        assert decode(encode(event)) == event
        with pytest.raises(InvalidEvent) as info:
            decoder(raw({**base, name: over}))
        assert info.value.field == field
    with pytest.raises(InvalidEvent) as refused:
        encode(msgspec.structs.replace(event, **{name: over}))
    assert refused.value.field == field


def test_invalid_events_are_value_errors() -> None:
    """Callers that only know ValueError still catch contract violations."""
    with pytest.raises(ValueError, match="community"):
        decode(raw(post(community="c.42")))


# -- encode validates what msgspec does not check on __init__ ------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"community": "c.42"}, "community"),
        ({"actor": ""}, "actor"),
        ({"post": "p" * 65}, "post"),
        ({"title": ""}, "title"),
        ({"title": "t" * 301}, "title"),
        ({"tags": ["ok"] * 11}, "tags"),
        ({"tags": ["UPPER"]}, "tags[0]"),
        ({"body": "b" * 32_001}, "body"),
    ],
)
def test_encode_refuses_invalid_fields(changes: dict[str, Any], field: str) -> None:
    event = make_post(**changes)  # msgspec does not validate constraints on __init__
    with pytest.raises(InvalidEvent) as info:
        encode(event)
    assert info.value.field == field


def test_encode_refuses_an_oversize_event() -> None:
    """A body within its 32,000 characters can still exceed the 64 KiB of UTF-8 JSON."""
    assert len(encode(make_post(body="é" * 30_000))) < MAX_EVENT_BYTES  # 2 bytes each: fits
    with pytest.raises(PayloadTooLarge) as info:
        encode(make_post(body="😀" * 20_000))  # 4 bytes each: 80,000 bytes
    assert info.value.field == "$"


def test_encode_refuses_another_version() -> None:
    with pytest.raises(InvalidEvent) as info:
        encode(make_post(v=2))
    assert info.value.field == "v"


def test_encode_refuses_a_type_outside_the_catalogue() -> None:
    class Stray(PostCreated, tag="post.stray", frozen=True):
        """Not in the catalogue."""

    stray = Stray(
        id=uuid.uuid4(), community="c1", actor="m1", occurred_at=WHEN, post="p1", title="t"
    )
    with pytest.raises(UnknownEventType):
        encode(stray)


def test_construction_checks_the_rules_of_post_init() -> None:
    """Cross-field rules run in __post_init__, so they fail at construction already."""
    with pytest.raises(InvalidEvent) as info:
        MemberJoined(id=uuid.uuid4(), community="c", actor="a", occurred_at=WHEN, member="system")
    assert info.value.field == "member"
    with pytest.raises(InvalidEvent) as info:
        ModerationDecided(
            id=uuid.uuid4(),
            community="c",
            actor="a",
            occurred_at=WHEN,
            target="p1",
            target_kind="post",
            target_author="m1",
            decision="suspend",
        )
    assert info.value.field == "until"
    with pytest.raises(InvalidEvent) as info:
        make_post(occurred_at=datetime(2024, 1, 1, 12))
    assert info.value.field == "occurred_at"


def test_encode_output_is_compact_json_of_the_struct() -> None:
    event = make_post(tags=["a", "b"])
    assert encode(event) == msgspec.json.encode(event)


# -- subjects ------------------------------------------------------------------------------------


def test_subject_of_an_event() -> None:
    event = make_post(community="c42")
    assert subject_of(event) == "agora.c42.post.created"
    assert subject("c42", "post.created") == subject_of(event)
    assert parse_subject(subject_of(event)) == ("c42", "post.created")


def test_stream_and_filters() -> None:
    assert STREAM == "AGORA"
    assert ALL_SUBJECTS == "agora.>"
    assert community_filter("c42") == "agora.c42.>"


@settings(max_examples=200)
@given(any_event())
def test_every_subject_is_a_literal_nats_subject_that_parses_back(event: Event) -> None:
    value = subject_of(event)
    tokens = value.split(".")
    assert all(tokens), value
    assert not {"*", ">"} & set(tokens)
    assert not any(ch.isspace() for ch in value)
    assert parse_subject(value) == (event.community, event.TYPE)


@given(ids(), st.sampled_from([cls.TYPE for cls in EVENT_TYPES]))
def test_parse_subject_inverts_subject(community: str, type_: str) -> None:
    assert parse_subject(subject(community, type_)) == (community, type_)


@pytest.mark.parametrize(
    "value",
    ["", "agora", "agora.c42", "agora..post.created", "other.c42.post.created", "agora.c42."],
)
def test_parse_subject_refuses_non_event_subjects(value: str) -> None:
    with pytest.raises(ValueError, match="not an Agora event subject"):
        parse_subject(value)


# -- the strategies other tests build on ---------------------------------------------------------

POOLS: dict[str, list[str]] = {
    "communities": ["c1", "c2"],
    "members": ["m1", "m2", "m3"],
    "posts": ["p1", "p2"],
    "replies": ["r1"],
    "reports": ["rep1"],
}
MEMBER_FIELDS = ("member", "author", "post_author", "reply_author", "target_author")


@settings(max_examples=200)
@given(any_event(**POOLS))
def test_pools_make_ids_collide(event: Event) -> None:
    values = msgspec.structs.asdict(event)
    assert event.community in POOLS["communities"]
    assert event.actor in [*POOLS["members"], SYSTEM_ACTOR]
    for name in MEMBER_FIELDS:
        if name in values:
            assert values[name] in POOLS["members"], name
    kind = values.get("target_kind")
    if kind is not None:
        pool = {"post": "posts", "reply": "replies", "member": "members"}[kind]
        assert values["target"] in POOLS[pool]
    for name, pool in (("post", "posts"), ("reply", "replies"), ("report", "reports")):
        if values.get(name) is not None:
            assert values[name] in POOLS[pool], name
    if values.get("parent") is not None:
        assert values["parent"] in POOLS["replies"]


@settings(max_examples=100)
@given(event_of(ModerationDecided))
def test_strategy_sets_until_iff_suspend(event: Event) -> None:
    assert isinstance(event, ModerationDecided)
    assert (event.until is not None) == (event.decision == "suspend")
    if event.until is not None:
        assert event.until >= event.occurred_at


@pytest.mark.parametrize(
    "pools",
    [{"members": ["m1", SYSTEM_ACTOR]}, {"communities": ["c.1"]}, {"posts": []}],
    ids=["system member", "invalid id", "empty pool"],
)
def test_strategy_pools_are_checked(pools: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError):
        any_event(**pools)
