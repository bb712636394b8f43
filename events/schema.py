"""JSON Schema export of the event contract, for producers in other languages."""

from __future__ import annotations

from typing import Any

import msgspec

from events.catalogue import EVENT_TYPES, Event
from events.limits import MAX_EVENT_BYTES, TIME_PATTERN, UUID_PATTERN

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_TIME_FIELDS = ("occurred_at", "until")


def _tighten(components: dict[str, Any]) -> dict[str, Any]:
    """Add what the codec checks beyond msgspec's schema.

    No extra fields (producers are validated strictly); timestamps spelled as the codec
    requires (:data:`events.limits.TIME_PATTERN`: range, ``T``, UTC, no leap second) beside
    ``format: date-time`` (the calendar); event ids canonical (lower-case, hyphenated).
    """
    names = {cls.__name__ for cls in EVENT_TYPES}
    for name, component in components.items():
        if name not in names:
            continue
        component["additionalProperties"] = False
        for field in _TIME_FIELDS:
            prop = component["properties"].get(field)
            if prop is None:
                continue
            variants = prop.get("anyOf", [prop])
            for variant in variants:
                if variant.get("format") == "date-time":
                    variant["pattern"] = TIME_PATTERN
        ident = component["properties"].get("id")
        if ident is not None and ident.get("format") == "uuid":
            ident["pattern"] = UUID_PATTERN
    return components


def _type_schema(cls: type[Event]) -> dict[str, Any]:
    (ref,), components = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": f"https://agora.invalid/schemas/{cls.TYPE}.json",
        "title": cls.TYPE,
        "$ref": ref["$ref"],
        "$defs": _tighten(components),
    }
    return schema


def event_schemas() -> dict[str, dict[str, Any]]:
    """Return one self-contained JSON Schema per event type, keyed by wire tag."""
    return {cls.TYPE: _type_schema(cls) for cls in EVENT_TYPES}


def union_schema() -> dict[str, Any]:
    """Return one JSON Schema accepting any event of the catalogue (a tagged ``oneOf``)."""
    refs, components = msgspec.json.schema_components(EVENT_TYPES, ref_template="#/$defs/{name}")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://agora.invalid/schemas/event.json",
        "title": "Agora event",
        "description": (
            "Any Agora event. Flat JSON, tagged by `type`. "
            f"The encoded event must not exceed {MAX_EVENT_BYTES} bytes."
        ),
        "oneOf": list(refs),
        "discriminator": {"propertyName": "type"},
        "$defs": _tighten(components),
    }
