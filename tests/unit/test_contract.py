"""The tighter contract (issue 14, finding 7), the same on every path, and the JSON Schema with it.

A corpus of hostile payloads -- timestamps with a space or a lower-case ``t``, leap seconds, dates
outside 1970..2999, upper-case or hyphenless UUIDs, control characters in text, duplicate keys,
infinite or huge numbers and deep nesting in unknown fields -- each accepted silently (or, for
the leap second, accepted by the schema and refused by the decoder) on main. Now the decoder
(``decode``, the engine's), the strict producer path (``validate_json``: ingest and ``agora
publish``) and the exported JSON Schema agree on every document of the corpus: schema-valid if
and only if decoder-valid. Duplicate keys cannot be seen by a JSON Schema (a parsed document has
one value per key), so they are checked against the two decoders only.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import any_event

from events import CODEC, Event, InvalidEvent
from events.limits import MAX_FUTURE_SKEW_LIMIT
from events.schema import union_schema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "v1"
BASE: dict[str, dict[str, Any]] = {
    path.name.removesuffix(".json"): json.loads(path.read_text())
    for path in sorted(FIXTURES.glob("*.json"))
}
SCHEMA = union_schema()
RUST = jsonschema_rs.validator_for(SCHEMA, validate_formats=True)
PYTHON = jsonschema.Draft202012Validator(SCHEMA)
UUID = "3f2b8c1e-5a4d-4e6f-9b7a-1c2d3e4f5a01"


def with_(type_: str, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE[type_])
    doc.update(changes)
    return doc


BAD_TIMES = [
    "2024-03-14 09:15:02Z",  # a space for T (msgspec accepted it)
    "2024-03-14t09:15:02Z",
    "2024-03-14T09:15:02z",
    "2024-03-14T09:15:02-00:00",
    "2024-03-14T09:15:02+01:00",
    "2024-12-31T23:59:60Z",  # leap second: schema-valid on main, dead-lettered by the decoder
    "2024-02-30T00:00:00Z",
    "2024-03-14T09:15:02.1234567Z",
    "2024-03-14T09:15:02Z\n",
    "2024-03-14T09:15Z",
    "2024-03-14",
    "9999-12-31T23:59:59Z",
    "3000-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00Z",
]
GOOD_TIMES = [
    "1970-01-01T00:00:00Z",
    "2999-12-31T23:59:59.999999Z",
    "2024-03-14T09:15:02+00:00",
    "2024-03-14T09:15:02.5Z",
    "2024-02-29T12:00:00Z",
]
BAD_IDS = [UUID.upper(), UUID.replace("-", ""), "{" + UUID + "}", "urn:uuid:" + UUID, UUID[:-1]]
CONTROLS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"]


def corpus() -> list[tuple[str, dict[str, Any], bool]]:
    """(name, document, valid) triples, hostile and valid, over every type of the catalogue."""
    docs: list[tuple[str, dict[str, Any], bool]] = []
    for type_ in BASE:
        docs.append((f"{type_} fixture", with_(type_), True))
        for t in BAD_TIMES + GOOD_TIMES:
            docs.append(
                (f"{type_} occurred_at={t!r}", with_(type_, occurred_at=t), t in GOOD_TIMES)
            )
        for ident in BAD_IDS:
            docs.append((f"{type_} id={ident!r}", with_(type_, id=ident), False))
        docs.append((f"{type_} unknown field", with_(type_, extra=1), False))
    for t in BAD_TIMES + GOOD_TIMES:
        doc = with_("moderation.decided", decision="suspend", until=t)
        docs.append((f"until={t!r}", doc, t in GOOD_TIMES))
    texts = {
        "member.joined": ["display_name"],
        "content.hidden": ["rule", "note"],
        "post.created": ["title", "body"],
        "reply.created": ["body"],
        "content.reported": ["note"],
        "moderation.decided": ["note"],
    }
    for type_, names in texts.items():
        for name in names:
            for c in CONTROLS:
                docs.append((f"{type_}.{name} with {c!r}", with_(type_, **{name: f"a{c}b"}), False))
            doc = with_(type_, **{name: "a\tb\nc\r\nd"})
            docs.append((f"{type_}.{name} tab/lf/cr", doc, True))
    return docs


CORPUS = corpus()


def accepted(decoder: Any, data: bytes) -> bool:
    try:
        decoder(data)
    except InvalidEvent:
        return False
    return True


@pytest.mark.parametrize(("name", "doc", "valid"), CORPUS, ids=[c[0] for c in CORPUS])
def test_schema_valid_iff_decoder_valid(name: str, doc: dict[str, Any], valid: bool) -> None:
    """The corpus is judged as the contract says, and alike by the schema and the decoders."""
    data = json.dumps(doc).encode()
    strict = accepted(CODEC.validate_json, data)
    assert strict == valid, name
    assert RUST.is_valid(doc) == strict, name
    if PYTHON.is_valid(doc) is False:  # no format assertion here: it may only be laxer
        assert not strict, name
    if "extra" not in doc:  # the engine is lenient only about unknown fields
        assert accepted(CODEC.decode, data) == strict, name
    compact = json.dumps(doc, separators=(",", ":")).encode()
    assert accepted(CODEC.decode, compact) == accepted(CODEC.decode, data), name


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            b'{"type":"member.joined","id":"%s","community":"c1","actor":"m1",'
            b'"member":"m1","member":"m2","occurred_at":"2024-03-14T09:15:02Z"}' % UUID.encode(),
            id="member twice",
        ),
        pytest.param(
            b'{"type":"member.joined","id":"%s","community":"c1","actor":"m1",'
            b'"member":"m1","memb\\u0065r":"m2","occurred_at":"2024-03-14T09:15:02Z"}'
            % UUID.encode(),
            id="member twice, once escaped",
        ),
        pytest.param(
            b'{"type":"member.joined","type":"member.joined","id":"%s","community":"c1",'
            b'"actor":"m1","member":"m1","occurred_at":"2024-03-14T09:15:02Z"}' % UUID.encode(),
            id="type twice",
        ),
        pytest.param(
            b'{"type":"member.joined","id":"%s","community":"c1","actor":"m1",'
            b'"member":"m1","occurred_at":"2024-03-14T09:15:02Z","x":{"a":1,"a":2}}'
            % UUID.encode(),
            id="nested key twice",
        ),
    ],
)
def test_duplicate_keys_are_refused(data: bytes) -> None:
    """msgspec keeps the last of two equal keys; the contract refuses the payload."""
    for decoder in (CODEC.decode, CODEC.validate_json):
        with pytest.raises(InvalidEvent, match="twice"):
            decoder(data)


def member_joined(**extra: Any) -> bytes:
    return json.dumps({**BASE["member.joined"], **extra}).encode()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(member_joined()[:-1] + b',"x":1e999}', id="infinite"),
        pytest.param(member_joined(x=10**30), id="huge integer"),
        pytest.param(member_joined(x=2.0**60), id="huge float"),
        pytest.param(member_joined()[:-1] + b',"x":' + b"1" * 5000 + b"}", id="5000 digits"),
        pytest.param(member_joined(x=[[[[[1]]]]]), id="nested five deep"),
        pytest.param(member_joined()[:-1] + b',"x":' + b"[" * 400 + b"]" * 400 + b"}", id="400"),
        pytest.param(member_joined(x="a\u0000b"), id="NUL in unknown text"),
        pytest.param(member_joined(X=1), id="name not snake_case"),
        pytest.param(member_joined(x={"Bad Key": 1}), id="nested name not snake_case"),
    ],
)
def test_unknown_fields_out_of_bounds_are_refused_by_decode(data: bytes) -> None:
    """Unknown fields are allowed on the stream (evolution), within documented bounds."""
    with pytest.raises(InvalidEvent):
        CODEC.decode(data)


def test_unknown_fields_within_bounds_are_ignored_by_decode() -> None:
    """A newer producer's field -- numbers, text, lists, small objects -- is still ignored."""
    data = member_joined(
        badge="gold\n", score=-(2**53 - 1), ratio=0.25, tags=["a", 1, None], meta={"k_1": [True]}
    )
    event: Event = CODEC.decode(data)
    assert event == CODEC.decode(member_joined())
    with pytest.raises(InvalidEvent):
        CODEC.validate_json(data)


def test_canonical_payloads_take_the_fast_path_and_agree() -> None:
    """Every fixture, encoded as the publisher would, decodes to the same event as its JSON."""
    for doc in BASE.values():
        event = CODEC.validate_json(json.dumps(doc).encode())
        assert CODEC.decode(CODEC.encode(event)) == event


_POOL = st.sampled_from(
    [*BAD_TIMES, *GOOD_TIMES, *BAD_IDS, UUID, "", "c42", "a\tb", "m" * 65]
    + [f"a{c}b" for c in CONTROLS]
)
HOSTILE_VALUES = st.one_of(
    _POOL,
    _POOL,
    _POOL,
    _POOL,
    st.text(max_size=20),
    st.integers(-(2**60), 2**60),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
)
UNEXPRESSED = {"until", "decision", "member", "v"}
"""Fields whose rules the schema states but the codec refines across fields (see docs/events.md,
Validation): ``until`` iff ``suspend``, ``member`` is never ``system``; and ``v``, whose
future versions the decoder refuses as unsupported while the schema knows only today's."""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_event(), st.data())
def test_schema_and_decoder_agree_on_mutated_events(event: Event, data: st.DataObject) -> None:
    """One field of a valid event replaced by a hostile value: schema-valid iff decoder-valid."""
    doc = json.loads(CODEC.encode(event))
    keys = sorted(set(doc) - UNEXPRESSED)
    key = data.draw(st.sampled_from(["occurred_at", "id", *keys]))  # the spelled fields often
    doc[key] = data.draw(HOSTILE_VALUES)
    encoded = json.dumps(doc).encode()
    assume(len(encoded) <= CODEC.max_bytes)
    assert RUST.is_valid(doc) == accepted(CODEC.validate_json, encoded), (key, doc[key])


def test_decode_bounds_occurred_at_by_the_stream_timestamp_when_given() -> None:
    """The engine may bound event time by the message's stream timestamp (replay-stable)."""
    event = CODEC.validate_json(json.dumps(BASE["member.joined"]).encode())
    data = CODEC.encode(event)
    stored = event.occurred_at
    assert CODEC.decode(data, stored_at=stored) == event
    assert CODEC.decode(data, stored_at=stored - MAX_FUTURE_SKEW_LIMIT) == event
    with pytest.raises(InvalidEvent, match="clock skew") as info:
        CODEC.decode(data, stored_at=stored - MAX_FUTURE_SKEW_LIMIT - timedelta(microseconds=1))
    assert info.value.field == "occurred_at"
