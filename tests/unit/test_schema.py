"""The exported JSON Schemas: valid Draft 2020-12, and in agreement with the codec.

The schemas are checked with an independent validator (jsonschema), so a producer in another
language that validates against them sends what the codec accepts, and the other way round.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator, FormatChecker
from strategies import any_event

from events import CODEC, EVENT_TYPES, Event, InvalidEvent, encode, validate_json
from events.schema import SCHEMA_DIALECT, event_schemas, union_schema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
SCHEMAS = event_schemas()
UNION = union_schema()

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))"
)


def _strict_date_time(value: object) -> bool:
    """RFC 3339 ``date-time``, for when jsonschema's optional rfc3339-validator is missing."""
    if not isinstance(value, str):
        return True
    match = _RFC3339.fullmatch(value)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        datetime(year, month, day, hour, minute, min(second, 59))  # 60: a leap second
    except ValueError:
        return False
    offset_ok = match[9] is None or (int(match[9]) < 24 and int(match[10]) < 60)
    return offset_ok and second <= 60


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    if "date-time" not in checker.checkers:
        checker.checks("date-time")(_strict_date_time)
    return checker


FORMATS = _format_checker()
VALIDATORS = {
    type_: Draft202012Validator(schema, format_checker=FORMATS) for type_, schema in SCHEMAS.items()
}
UNION_VALIDATOR = Draft202012Validator(UNION, format_checker=FORMATS)


def schema_errors(payload: Any, type_: str | None = None) -> list[str]:
    validator = UNION_VALIDATOR if type_ is None else VALIDATORS[type_]
    return [error.message for error in validator.iter_errors(payload)]


def current_fixtures() -> list[Path]:
    """Fixtures of the current version of their type: the schemas describe that version."""
    paths = FIXTURES.glob("v*/*.json")
    return sorted(p for p in paths if p.parent.name == f"v{CODEC.current.get(p.stem)}")


# -- the schemas themselves ----------------------------------------------------------------------


def test_one_schema_per_type() -> None:
    assert list(SCHEMAS) == [cls.TYPE for cls in EVENT_TYPES]


@pytest.mark.parametrize("type_", list(SCHEMAS))
def test_type_schema_is_valid_draft_2020_12(type_: str) -> None:
    schema = SCHEMAS[type_]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA_DIALECT
    assert schema["title"] == type_
    assert type_ in schema["$id"]


def test_union_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(UNION)
    assert UNION["$schema"] == SCHEMA_DIALECT
    assert len(UNION["oneOf"]) == len(EVENT_TYPES)


def test_schemas_are_json() -> None:
    """What ``agora schema --out`` writes must survive a JSON round trip unchanged."""
    for schema in [*SCHEMAS.values(), UNION]:
        assert json.loads(json.dumps(schema)) == schema


@pytest.mark.parametrize("type_", list(SCHEMAS))
def test_type_schema_is_closed_and_tagged(type_: str) -> None:
    schema = SCHEMAS[type_]
    (component,) = (c for c in schema["$defs"].values() if "properties" in c)
    assert component["additionalProperties"] is False
    assert component["properties"]["type"] == {"enum": [type_]}
    assert {"type", "id", "community", "actor", "occurred_at"} <= set(component["required"])


# -- fixtures validate with the independent validator --------------------------------------------


@pytest.mark.parametrize(
    "path", current_fixtures(), ids=lambda p: p.relative_to(FIXTURES).as_posix()
)
def test_fixture_validates_against_its_schema_and_the_union(path: Path) -> None:
    payload = json.loads(path.read_bytes())
    assert schema_errors(payload, path.stem) == []
    assert schema_errors(payload) == []


def test_a_fixture_does_not_validate_against_another_types_schema() -> None:
    payload = json.loads((FIXTURES / "v1" / "post.created.json").read_bytes())
    assert schema_errors(payload, "post.deleted")


# -- agreement with the codec --------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_event())
def test_encoded_events_validate_against_the_schemas(event: Event) -> None:
    payload = json.loads(encode(event))
    assert schema_errors(payload, event.TYPE) == []
    assert schema_errors(payload) == []


BASE: dict[str, Any] = json.loads((FIXTURES / "v1" / "post.created.json").read_bytes())


def changed(**changes: Any) -> dict[str, Any]:
    result = {**BASE, **changes}
    return {k: v for k, v in result.items() if v is not ...}


INVALID = {
    "extra field": changed(pinned=True),
    "id with a dot": changed(community="c.42"),
    "id too long": changed(post="p" * 65),
    "empty id": changed(actor=""),
    "event id not a uuid": changed(id="not-a-uuid"),
    "non-UTC time": changed(occurred_at="2024-03-14T11:26:53+02:00"),
    "time without offset": changed(occurred_at="2024-03-14T09:26:53"),
    "impossible date": changed(occurred_at="2024-02-30T09:26:53Z"),
    "missing field": changed(title=...),
    "wrong type": changed(title=7),
    "empty title": changed(title=""),
    "bad tag": changed(tags=["Upper"]),
    "too many tags": changed(tags=["t"] * 11),
    "unknown type": changed(type="post.exploded"),
    "version out of range": changed(v=0),
}


@pytest.mark.parametrize("payload", INVALID.values(), ids=INVALID.keys())
def test_codec_and_schema_both_refuse(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        validate_json(json.dumps(payload).encode())
    assert schema_errors(payload), "the union schema accepted it"
    if payload["type"] in VALIDATORS:
        assert schema_errors(payload, payload["type"]), "the type's schema accepted it"


def test_the_base_of_the_invalid_payloads_is_valid() -> None:
    assert validate_json(json.dumps(BASE).encode()).TYPE == "post.created"
    assert schema_errors(BASE, "post.created") == []


def test_utc_pattern_accepts_both_spellings_of_utc() -> None:
    for stamp in ("2024-03-14T09:26:53Z", "2024-03-14T09:26:53.5+00:00"):
        payload = changed(occurred_at=stamp)
        assert schema_errors(payload, "post.created") == []
        assert validate_json(json.dumps(payload).encode()).occurred_at.utcoffset() == timedelta(0)


def test_the_date_time_checker_is_strict() -> None:
    """The fallback checker used when rfc3339-validator is missing does check dates."""
    assert _strict_date_time("2024-03-14T09:26:53.123Z")
    assert _strict_date_time("2024-03-14t09:26:53+00:00")
    assert not _strict_date_time("2024-02-30T09:26:53Z")
    assert not _strict_date_time("2024-03-14 09:26")
    assert not _strict_date_time("2024-03-14T09:26:53+24:00")
