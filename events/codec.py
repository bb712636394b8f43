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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec

from events.catalogue import EVENT_TYPES, AnyEvent, Event
from events.errors import InvalidEvent, PayloadTooLarge, UnknownEventType, UnsupportedVersion
from events.limits import MAX_EVENT_BYTES

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

    def decode(self, data: bytes | bytearray | memoryview) -> Event:
        """Decode stream bytes to the current version of their type (lenient on extra fields)."""
        self._check_size(data)
        try:
            event = self._decoder.decode(data)
        except msgspec.ValidationError as error:
            return self._decode_slow(data, error)
        except _NOT_JSON as error:
            raise InvalidEvent("$", f"not valid JSON ({error})") from None
        current = self.current[_tag(type(event))]
        if event.v != current or (current > 1 and self._version.decode(data).v is None):
            # An older version, or one without `v` (v1) that happens to fit the current shape.
            return self._decode_slow(data, None)
        return event

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


def encode(event: AnyEvent) -> bytes:
    """Validate and encode an event with the default codec."""
    return CODEC.encode(event)


def decode(data: bytes | bytearray | memoryview) -> Event:
    """Decode stream bytes with the default codec (upcasting old versions)."""
    return CODEC.decode(data)


def validate_json(data: bytes | bytearray | memoryview) -> Event:
    """Strictly validate a producer's raw JSON with the default codec."""
    return CODEC.validate_json(data)
