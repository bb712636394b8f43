"""Frozen wire payloads: every version of every type ever written must keep decoding.

``tests/fixtures/events/v<N>/<type>.json`` holds one hand-written payload per type and version.
They are never regenerated: when a type moves to v2, its v1 fixture stays and a v2 one is added.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from events import CODEC, EVENT_TYPES, Event, decode, encode, validate_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
ALL = sorted(FIXTURES.glob("v*/*.json"))

#: Digest of each fixture's JSON content (canonical form, so whitespace does not matter). A
#: fixture is a frozen payload some producer once sent: fix the code, never the fixture.
FROZEN = {
    "v1/answer.accepted.json": "dee5cb3300a6f1a8",
    "v1/content.hidden.json": "473abdc3da0e8e89",
    "v1/content.reported.json": "15ab8f612e53c31d",
    "v1/content.restored.json": "5f6b00f83860437b",
    "v1/member.joined.json": "753ce0bcb0dd1850",
    "v1/member.left.json": "a6decfb68fa3e926",
    "v1/moderation.decided.json": "993adf544f1b3bf7",
    "v1/post.created.json": "4ef9bc517c590e5a",
    "v1/post.deleted.json": "3da2bd3094fb40e9",
    "v1/post.edited.json": "ad6aac8dfd0ddf2c",
    "v1/reaction.added.json": "a08c00e2335636fc",
    "v1/reaction.removed.json": "b9718c07d658d35e",
    "v1/reply.created.json": "438978fb8d9a2cbc",
    "v1/reply.deleted.json": "897f41ca6f4a9a8c",
}


def version_of(path: Path) -> int:
    match = re.fullmatch(r"v(\d+)", path.parent.name)
    assert match, f"{path}: fixtures live in v<N>/ directories"
    return int(match[1])


def load(path: Path) -> dict[str, Any]:
    payload = json.loads(path.read_bytes())
    assert isinstance(payload, dict), path
    return payload


def digest(path: Path) -> str:
    canonical = json.dumps(load(path), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def name(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


def test_there_are_fixtures() -> None:
    assert len(ALL) >= len(EVENT_TYPES)


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.TYPE)
def test_every_type_has_a_fixture_for_every_version(cls: type[Event]) -> None:
    current = CODEC.current[cls.TYPE]
    missing = [
        f"v{v}/{cls.TYPE}.json"
        for v in range(1, current + 1)
        if not (FIXTURES / f"v{v}" / f"{cls.TYPE}.json").is_file()
    ]
    assert not missing, f"add hand-written fixtures {missing} under {FIXTURES}"


@pytest.mark.parametrize("path", ALL, ids=name)
def test_fixture_decodes_to_the_current_version_of_its_type(path: Path) -> None:
    event = decode(path.read_bytes())
    assert path.stem == event.TYPE
    assert event.v == CODEC.current[event.TYPE]
    # Re-validate: what the fixture decodes to is a valid event of today's contract.
    assert validate_json(encode(event)) == event


@pytest.mark.parametrize("path", ALL, ids=name)
def test_fixture_is_named_after_its_type_and_version(path: Path) -> None:
    payload = load(path)
    assert payload["type"] == path.stem
    assert payload.get("v", 1) == version_of(path)
    assert path.stem in CODEC.types, f"{name(path)}: no such type in the catalogue"


@pytest.mark.parametrize("path", ALL, ids=name)
def test_current_version_fixture_passes_strict_validation(path: Path) -> None:
    payload = load(path)
    if version_of(path) != CODEC.current[payload["type"]]:
        pytest.skip("an older version: validate_json checks producers of the current version")
    event = validate_json(path.read_bytes())
    assert event == decode(path.read_bytes())


@pytest.mark.parametrize("path", ALL, ids=name)
def test_fixture_is_frozen(path: Path) -> None:
    assert name(path) in FROZEN, (
        f"new fixture {name(path)}: add its digest {digest(path)!r} to FROZEN in {__file__}"
    )
    assert digest(path) == FROZEN[name(path)], (
        f"{name(path)} changed: fixtures are payloads producers have sent and must keep "
        "decoding; fix the code (or add an upcaster), never the fixture"
    )


def test_a_field_added_later_takes_its_default_in_an_older_payload() -> None:
    """``anonymous`` came after the v1 reaction fixtures: they decode as a member's reaction."""
    for kind in ("reaction.added", "reaction.removed"):
        payload = load(FIXTURES / "v1" / f"{kind}.json")
        assert "anonymous" not in payload
        event = decode((FIXTURES / "v1" / f"{kind}.json").read_bytes())
        assert event.anonymous is False  # type: ignore[attr-defined]
