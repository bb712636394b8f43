"""Fuzzing the decoder: whatever arrives, ``decode``/``validate_json`` return an Event or raise
InvalidEvent, never anything else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import any_event

from events import (
    CODEC,
    EVENT_TYPES,
    Event,
    InvalidEvent,
    UnknownEventType,
    UnsupportedVersion,
    decode,
    encode,
    validate_json,
)
from events.limits import MAX_EXTRA_DEPTH, MAX_SAFE_INTEGER, TEXT_PATTERN

FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)

TYPES = [cls.TYPE for cls in EVENT_TYPES]
FIELD_NAMES = sorted({name for cls in EVENT_TYPES for name in cls.__struct_fields__} | {"type"})

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from([*TYPES, "system", "", "2024-03-14T09:26:53Z", "c42"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


# Crashes found by these fuzzers and reported (see the xfail tests below and in test_codec.py).
# They are tolerated here only while they still reproduce, so the fuzzers keep hunting new ones;
# once events/codec.py catches them this tuple is empty and any such crash fails again.
def _reproduces(exc_type: type[BaseException], data: bytes) -> bool:
    try:
        decode(data)
    except exc_type:
        return True
    except InvalidEvent:
        return False
    return False


_INVALID_UTF8 = b'{"type": "post.created", "title": "\xff"}'
_DEEP = b'{"type": "post.created", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
KNOWN_CRASHES: tuple[type[BaseException], ...] = tuple(
    exc
    for exc, data in ((UnicodeDecodeError, _INVALID_UTF8), (RecursionError, _DEEP))
    if _reproduces(exc, data)
)


def outcome(decoder: Callable[[bytes], Event], data: bytes) -> Event | InvalidEvent | None:
    """Run ``decoder``; return the Event or the InvalidEvent (None for a known, reported crash)."""
    try:
        event = decoder(data)
    except InvalidEvent as error:
        assert isinstance(error.field, str), error  # "" for an unknown key that is empty
        assert error.reason, error
        return error
    except KNOWN_CRASHES:
        return None
    assert isinstance(event, Event)
    assert type(event) in EVENT_TYPES
    return event


def check(data: bytes) -> Event | InvalidEvent | None:
    """Both entry points survive ``data``; whatever the strict one accepts, the lenient one does."""
    lenient = outcome(decode, data)
    strict = outcome(validate_json, data)
    if isinstance(strict, Event):
        assert lenient == strict
    if not isinstance(lenient, Event):
        assert not isinstance(strict, Event)
    return lenient


# -- arbitrary input -----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    check(json.dumps(value).encode())


@FUZZ
@given(
    st.sampled_from(TYPES),
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=len(FIELD_NAMES)),
)
def test_objects_with_a_known_type_and_plausible_keys(type_: str, fields: dict[str, Any]) -> None:
    check(json.dumps({**fields, "type": type_}).encode())


# -- mutations of valid events -------------------------------------------------------------------


def payload_of(event: Event) -> dict[str, Any]:
    result = json.loads(encode(event))
    assert isinstance(result, dict)
    return result


@FUZZ
@given(any_event(), st.data())
def test_dropping_a_key_fails_on_that_key_or_decodes(event: Event, data: st.DataObject) -> None:
    payload = payload_of(event)
    key = data.draw(st.sampled_from(sorted(payload)))
    del payload[key]
    result = check(json.dumps(payload).encode())
    if isinstance(result, InvalidEvent):
        # A list replaced by a list of another item type is reported at the item: tags[0].
        assert result.field == key or result.field.startswith((f"{key}[", f"{key}."))
    else:
        assert isinstance(result, type(event))


@FUZZ
@given(any_event(), st.data())
def test_changing_a_value_type(event: Event, data: st.DataObject) -> None:
    payload = payload_of(event)
    key = data.draw(st.sampled_from(sorted(payload)))
    value = data.draw(json_values.filter(lambda v: type(v) is not type(payload[key])))
    payload[key] = value
    result = check(json.dumps(payload).encode())
    if isinstance(result, InvalidEvent):
        # A list replaced by a list of another item type is reported at the item: tags[0].
        assert result.field == key or result.field.startswith((f"{key}[", f"{key}."))


def allowed_extra(name: str, value: Any, depth: int = 0) -> bool:
    """The documented rule for a field the decoder does not know (docs/events.md, Limits)."""
    if depth == 0 and not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        return False
    if depth > MAX_EXTRA_DEPTH:
        return False
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int | float):
        return math.isfinite(value) and abs(value) <= MAX_SAFE_INTEGER
    if isinstance(value, str):
        return re.search(TEXT_PATTERN, value) is not None
    if isinstance(value, list):
        return all(allowed_extra(name, v, depth + 1) for v in value)
    assert isinstance(value, dict)
    return all(
        re.fullmatch(r"[a-z][a-z0-9_]{0,63}", k) is not None and allowed_extra(name, v, depth + 1)
        for k, v in value.items()
    )


extra_names = st.text(max_size=12) | st.from_regex(r"\A[a-z][a-z0-9_]{0,11}\Z")


@FUZZ
@given(any_event(), st.dictionaries(extra_names, json_values, min_size=1, max_size=3))
def test_injected_keys_are_bounded_by_decode_and_refused_by_validate_json(
    event: Event, extra: dict[str, Any]
) -> None:
    """Unknown fields within the documented bounds are ignored by decode; others are refused."""
    payload = payload_of(event)
    extra = {k: v for k, v in extra.items() if k not in payload and k not in FIELD_NAMES}
    assume(extra)
    data = json.dumps({**payload, **extra}).encode()
    assume(len(data) <= CODEC.max_bytes)
    if all(allowed_extra(k, v) for k, v in extra.items()):
        assert decode(data) == event
    else:
        with pytest.raises(InvalidEvent) as refused:
            decode(data)
        assert refused.value.field in extra or refused.value.field == "$"
    with pytest.raises(InvalidEvent) as info:
        validate_json(data)
    assert info.value.field in extra


@FUZZ
@given(any_event(), st.sampled_from(TYPES) | st.text(max_size=20))
def test_changing_the_type(event: Event, type_: str) -> None:
    payload = payload_of(event)
    payload["type"] = type_
    result = check(json.dumps(payload).encode())
    if type_ not in TYPES:
        assert isinstance(result, UnknownEventType)
        assert result.type == type_
    elif isinstance(result, Event):
        assert type_ == result.TYPE


@FUZZ
@given(any_event(), json_values)
def test_changing_the_version(event: Event, version: Any) -> None:
    payload = payload_of(event)
    payload["v"] = version
    result = check(json.dumps(payload).encode())
    current = CODEC.current[event.TYPE]
    if version == current and type(version) is int:
        assert result == event
    elif type(version) is int and version > current:
        assert isinstance(result, UnsupportedVersion)
    else:
        assert isinstance(result, InvalidEvent)
        assert result.field == "v"


@FUZZ
@given(any_event(), st.data())
def test_truncated_and_spliced_bytes(event: Event, data: st.DataObject) -> None:
    raw = encode(event)
    cut = data.draw(st.integers(0, len(raw) - 1))
    noise = data.draw(st.binary(max_size=8))
    check(raw[:cut] + noise + raw[cut + 1 :])


# -- crashes found by fuzzing (reported; strict xfail flips once fixed) --------------------------


@pytest.mark.parametrize("decoder", [decode, validate_json], ids=["decode", "validate_json"])
@pytest.mark.parametrize(
    "data", [b"[" * 5000, _DEEP, b'{"a":' * 3000 + b"1" + b"}" * 3000], ids=["array", "key", "obj"]
)
def test_deep_nesting_is_an_invalid_event(decoder: Callable[[bytes], Event], data: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        decoder(data)
    assert info.value.field == "$"
