"""Encoding, validation and decoding of events, with upcasting of older schema versions.

Three entry points, one per place an event crosses a boundary:

* :meth:`Codec.encode` -- a Python producer's Struct to wire bytes, validated (a Struct built in
  Python is not checked by msgspec until it is decoded, so encode round-trips it).
* :meth:`Codec.validate_json` -- raw JSON from a producer that is not Python: strict, unknown
  fields are refused.
* :meth:`Codec.decode` -- bytes read back from the stream: lenient about unknown fields (a newer
  producer may have added a defaulted field, msgspec's evolution rule), upcasts older versions,
  refuses future ones.

Every failure is an :class:`events.errors.InvalidEvent` naming the field and the reason.

Beside msgspec's typed decode, every path checks the *wire spelling* (:meth:`Codec._check_wire`),
which a typed decode cannot see: timestamps as the contract spells them
(:data:`events.limits.TIME_PATTERN`: upper-case ``T``, ``Z`` or ``+00:00``, at most six
fractional digits), event ids as canonical lower-case hyphenated UUIDs, no key twice in an
object (msgspec keeps the last copy silently), and fields this code does not know bounded
(snake_case names, nesting depth, finite and exactly representable numbers, free text).

Fast path: every Agora producer (the publisher, hence ingest and ``agora publish``) writes the
canonical encoding of the decoded event, so a payload equal to ``encode(decode(payload))``
passes by one msgspec encode and one byte comparison. Anything else (another client's JSON,
an older version, unknown fields) is parsed again by the standard library and checked exactly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import msgspec.inspect

from events.catalogue import EVENT_TYPES, AnyEvent, Event
from events.errors import InvalidEvent, PayloadTooLarge, UnknownEventType, UnsupportedVersion
from events.limits import (
    EXTRA_FIELD_PATTERN,
    MAX_BODY_LENGTH,
    MAX_EVENT_BYTES,
    MAX_EXTRA_DEPTH,
    MAX_FUTURE_SKEW_LIMIT,
    MAX_SAFE_INTEGER,
    TEXT_PATTERN,
    TIME_PATTERN,
    UUID_PATTERN,
)

Payload = dict[str, Any]
"""A decoded JSON object, as upcasters see it."""

Upcaster = Callable[[Payload], Payload]
"""Turns the payload of version ``v`` of a type into version ``v + 1`` (setting ``"v"``)."""

_NOT_JSON = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""What msgspec raises for bytes that are not (acceptable) JSON at all."""


class _Versioned(msgspec.Struct):
    """Only the ``v`` of a payload, to tell "v absent" from "v = current"."""

    v: Any = None


_AT = re.compile(r"^(?P<reason>.*?) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_OURS = re.compile(r"^(?P<field>[a-z_][a-z0-9_.]*): (?P<reason>.+)$", re.DOTALL)


_TIME = re.compile(TIME_PATTERN)
_UUID = re.compile(UUID_PATTERN)
_EXTRA_NAME = re.compile(EXTRA_FIELD_PATTERN)
_TEXT = re.compile(TEXT_PATTERN)

TIME_REASON: Final = (
    "must be an RFC 3339 UTC timestamp spelled YYYY-MM-DDTHH:MM:SS[.ffffff] then Z or +00:00 "
    "(upper-case T, at most 6 fractional digits), from 1970-01-01 to 2999-12-31"
)
"""Why a timestamp is refused (its spelling or its range)."""
TEXT_REASON: Final = "must be free text: no control character but tab, line feed, carriage return"
"""Why free text is refused."""
UUID_REASON: Final = "must be a canonical UUID: lower-case hex digits with hyphens (8-4-4-4-12)"
"""Why an event id is refused."""


def _spelled_fields(cls: type[Event]) -> dict[str, re.Pattern[str]]:
    """The wire names of the UUID and datetime fields of ``cls``, with the pattern of each."""
    found: dict[str, re.Pattern[str]] = {}
    for f in msgspec.structs.fields(cls):
        kinds = _kinds(msgspec.inspect.type_info(f.type))
        if "time" in kinds:
            found[f.encode_name] = _TIME
        elif "uuid" in kinds:
            found[f.encode_name] = _UUID
    return found


def _kinds(info: msgspec.inspect.Type) -> set[str]:
    if isinstance(info, msgspec.inspect.Metadata):
        return _kinds(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        return set().union(*(_kinds(t) for t in info.types))
    if isinstance(info, msgspec.inspect.DateTimeType):
        return {"time"}
    if isinstance(info, msgspec.inspect.UUIDType):
        return {"uuid"}
    return set()


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing an object that names a key twice."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidEvent(key, "appears twice in one JSON object")
        result[key] = value
    return result


def _check_extra(name: str, value: Any) -> None:
    """Check a field this code does not know against the documented bounds."""
    if not _EXTRA_NAME.search(name):
        raise InvalidEvent(name, "an unknown field's name must be snake_case, at most 64 chars")
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            raise InvalidEvent(name, f"nested deeper than {MAX_EXTRA_DEPTH} levels")
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int | float):
            if not (math.isfinite(item) and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER):
                raise InvalidEvent(name, f"numbers must be finite, within +/-{MAX_SAFE_INTEGER}")
        elif isinstance(item, str):
            if len(item) > MAX_BODY_LENGTH or not _TEXT.search(item):
                raise InvalidEvent(name, "text must be free text (no control characters)")
        elif isinstance(item, list):
            stack.extend((member, depth + 1) for member in item)
        elif isinstance(item, dict):
            for key, member in item.items():
                if not _EXTRA_NAME.search(key):
                    raise InvalidEvent(name, f"key {key[:64]!r} is not snake_case")
                stack.append((member, depth + 1))


def _translate(error: msgspec.ValidationError) -> InvalidEvent:
    """Turn a msgspec validation message into an InvalidEvent naming the field."""
    message = str(error)
    path = ""
    at = _AT.match(message)
    if at:
        message, path = at["reason"], at["path"].lstrip(".")
    for pattern, why in ((_MISSING, "is required"), (_UNKNOWN, "is not a field of this type")):
        m = pattern.match(message)
        if m:
            field = f"{path}.{m['field']}" if path else m["field"]
            return InvalidEvent(field, why)
    ours = _OURS.match(message)
    if ours and not path:
        return InvalidEvent(ours["field"], ours["reason"])
    if message.startswith("Expected `str` matching regex") and repr(TEXT_PATTERN)[1:-1] in message:
        return InvalidEvent(path or "$", TEXT_REASON)
    if path == "type" and message.startswith("Invalid value"):
        return UnknownEventType(message.removeprefix("Invalid value ").strip("'"))
    return InvalidEvent(path or "$", message)


class Codec:
    """Encodes and decodes one catalogue of event types, with upcasters for old versions.

    The default catalogue is :data:`CODEC`; tests and tools may build others (for example with a
    type at a newer version) to exercise evolution.
    """

    def __init__(
        self,
        types: Iterable[type[Event]] = EVENT_TYPES,
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
        *,
        max_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.types: Final[dict[str, type[Event]]] = {_tag(t): t for t in types}
        self.current: Final[dict[str, int]] = {
            name: _default_version(t) for name, t in self.types.items()
        }
        self.upcasters: Final = dict(upcasters or {})
        self.max_bytes: Final = max_bytes
        union: Any = _union(self.types.values())
        self._decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(union)
        self._encoder = msgspec.json.Encoder()
        self._field_names: dict[str, frozenset[str]] = {
            name: frozenset(f.encode_name for f in msgspec.structs.fields(t)) | {"type"}
            for name, t in self.types.items()
        }
        self._keys = msgspec.json.Decoder(dict[str, msgspec.Raw])
        self._version = msgspec.json.Decoder(_Versioned)
        self._spelled: dict[str, dict[str, re.Pattern[str]]] = {
            name: _spelled_fields(t) for name, t in self.types.items()
        }

    def encode(self, event: Event) -> bytes:
        """Validate ``event`` against the contract and return its JSON bytes."""
        if type(event).TYPE not in self.types or type(event) is not self.types[event.TYPE]:
            raise UnknownEventType(type(event).TYPE or type(event).__name__)
        data = self._encoder.encode(event)
        self._check_size(data)
        if event.v != self.current[event.TYPE]:
            raise InvalidEvent("v", f"new events are written at version {self.current[event.TYPE]}")
        self.decode(data)
        return data

    def decode(
        self, data: bytes | bytearray | memoryview, *, stored_at: datetime | None = None
    ) -> Event:
        """Decode stream bytes to the current version of their type (lenient on extra fields).

        ``stored_at``, when given, is the message's stream timestamp (fixed when it was stored,
        so the same on every replay): an event dated more than
        :data:`events.limits.MAX_FUTURE_SKEW_LIMIT` after it is refused, like one refused by a
        producer's clock. Deterministic: no wall clock is read.
        """
        event = self._decode(data)
        if stored_at is not None and event.occurred_at > stored_at + MAX_FUTURE_SKEW_LIMIT:
            check_clock_skew(event, stored_at, MAX_FUTURE_SKEW_LIMIT)
        return event

    def _decode(self, data: bytes | bytearray | memoryview) -> Event:
        self._check_size(data)
        try:
            event = self._decoder.decode(data)
        except msgspec.ValidationError as error:
            event = self._decode_slow(data, error)
        except _NOT_JSON as error:
            raise InvalidEvent("$", f"not valid JSON ({error})") from None
        else:
            current = self.current[_tag(type(event))]
            if event.v != current or (current > 1 and self._version.decode(data).v is None):
                # An older version, or one without `v` (v1) that happens to fit the current shape.
                event = self._decode_slow(data, None)
        self._check_wire(data, event)
        return event

    def _check_wire(self, data: bytes | bytearray | memoryview, event: Event) -> None:
        """Check what the typed decode cannot see (see the module docstring); raise InvalidEvent."""
        if self._encoder.encode(event) == data:
            return  # canonical: one key each, canonical spellings, no unknown field
        try:
            payload = json.loads(bytes(data), object_pairs_hook=_no_repeats)
        except InvalidEvent:
            raise
        except (ValueError, RecursionError) as error:  # e.g. an integer of 5000 digits
            raise InvalidEvent("$", f"not acceptable JSON ({error})") from None
        type_ = event.TYPE
        for name, pattern in self._spelled[type_].items():
            value = payload.get(name)
            if isinstance(value, str) and not pattern.match(value):
                raise InvalidEvent(name, UUID_REASON if pattern is _UUID else TIME_REASON)
        names = self._field_names[type_] | {"v"}
        for name, value in payload.items():
            if name not in names:
                _check_extra(name, value)

    def validate_json(self, data: bytes | bytearray | memoryview) -> Event:
        """Validate raw JSON from a producer strictly: also refuse fields the type does not have."""
        event = self.decode(data)
        try:
            keys = self._keys.decode(data)
        except _NOT_JSON as error:
            raise InvalidEvent("$", f"not valid JSON ({error})") from None
        allowed = self._field_names[_tag(type(event))]
        for key in keys:
            if key not in allowed:
                raise InvalidEvent(key, "is not a field of this type")
        return event

    def _check_size(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(len(data), self.max_bytes)

    def _decode_slow(
        self, data: bytes | bytearray | memoryview, error: msgspec.ValidationError | None
    ) -> Event:
        """Handle what the fast path could not: old versions, future versions, and errors."""
        try:
            payload = msgspec.json.decode(data)
        except _NOT_JSON as exc:
            raise InvalidEvent("$", f"not valid JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise InvalidEvent("$", f"expected a JSON object, got {type(payload).__name__}")
        type_ = payload.get("type")
        if not isinstance(type_, str):
            raise InvalidEvent("type", "is required and must be a string")
        if type_ not in self.types:
            raise UnknownEventType(type_)
        version = payload.get("v", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidEvent("v", "must be a positive integer")
        current = self.current[type_]
        if version > current:
            raise UnsupportedVersion(type_, version, current)
        if version == current:
            if error is None:  # pragma: no cover - the fast path would have returned
                raise InvalidEvent("$", "could not decode")
            raise _translate(error) from None
        while version < current:
            upcast = self.upcasters.get((type_, version))
            if upcast is None:
                raise UnsupportedVersion(type_, version, current)
            try:
                payload = upcast(payload)
            except Exception as exc:
                raise InvalidEvent("$", f"cannot upcast {type_!r} v{version}: {exc!r}") from None
            version += 1
            if payload.get("v") != version:
                raise InvalidEvent("v", f"upcaster of {type_!r} v{version - 1} did not set v")
        try:
            return self._decoder.decode(self._encoder.encode(payload))
        except msgspec.ValidationError as exc:
            raise _translate(exc) from None


def _tag(cls: type[Event]) -> str:
    """The wire tag of an event type, read from its Struct configuration."""
    tag = cls.__struct_config__.tag
    return tag if isinstance(tag, str) else ""


def _default_version(cls: type[Event]) -> int:
    for f in msgspec.structs.fields(cls):
        if f.name == "v" and isinstance(f.default, int):
            return f.default
    raise TypeError(f"{cls.__name__} has no default for v")  # pragma: no cover


def _union(types: Iterable[type[Event]]) -> Any:
    result: Any = None
    for t in types:
        result = t if result is None else result | t
    return result


UPCASTERS: Final[Mapping[tuple[str, int], Upcaster]] = {}
"""Upcasters of the catalogue, keyed by ``(type, from_version)``. Every type is at v1 today."""

CODEC: Final = Codec(EVENT_TYPES, UPCASTERS)
"""The codec of the current catalogue."""


def check_clock_skew(event: Event, now: datetime, max_skew: timedelta) -> None:
    """Refuse ``event`` when its ``occurred_at`` lies more than ``max_skew`` after ``now``.

    Called where there is a clock -- the publisher, the ingest service, ``agora publish`` --
    with that clock's time; never by a fold, whose answer must not depend on when it runs.
    """
    if event.occurred_at > now + max_skew:
        ahead = event.occurred_at - now
        raise InvalidEvent(
            "occurred_at",
            f"lies {ahead} after the time it is checked against ({now:%Y-%m-%dT%H:%M:%SZ}: "
            "the producer's clock, or the stream's timestamp); "
            f"at most {max_skew} of clock skew is accepted",
        )


def encode(event: AnyEvent) -> bytes:
    """Validate and encode an event with the default codec."""
    return CODEC.encode(event)


def decode(data: bytes | bytearray | memoryview) -> Event:
    """Decode stream bytes with the default codec (upcasting old versions)."""
    return CODEC.decode(data)


def validate_json(data: bytes | bytearray | memoryview) -> Event:
    """Strictly validate a producer's raw JSON with the default codec."""
    return CODEC.validate_json(data)
