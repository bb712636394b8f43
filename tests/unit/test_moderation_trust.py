"""The moderation service's trust rules, without I/O: scoped moderator tokens, keyed ids."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agora.config import Settings
from agora.errors import ConfigError
from agora.moderation_wiring import ID_KEY_FILE, id_key
from events.ids import InvalidIdKey, derived_event_id, keyed_event_id
from services.errors import InvalidSetting
from services.moderation.auth import ModeratorTokens
from services.moderation.errors import Forbidden, Unauthorized

KEY = b"k" * 32


def test_moderator_tokens_carry_their_communities() -> None:
    tokens = ModeratorTokens.parse("mod1@c42|c43=token-one-1,lead@*=token-lead-1")
    mod1 = tokens.from_header("Bearer token-one-1")
    assert (mod1.member, mod1.communities) == ("mod1", frozenset({"c42", "c43"}))
    mod1.check("c42")
    with pytest.raises(Forbidden, match="'mod1' may not decide in community 'c44'") as refused:
        mod1.check("c44")
    assert (refused.value.http_status, refused.value.code) == (403, "forbidden")
    lead = tokens.moderator("token-lead-1")
    assert lead.communities is None and lead.may_decide("anything")
    with pytest.raises(Unauthorized):
        tokens.moderator("token-nobody")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("mod1=token-one-1", "has no communities"),
        ("mod1@=token-one-1", "has no communities"),
        ("mod1@c1|*=token-one-1", "stands alone"),
        ("mod1@c.1=token-one-1", "not a community id"),
        ("mod1@c1=short", "shorter than"),
        ("mod1@c1=token-one-1,mod1@c2=token-one-2", "listed twice"),
        ("system@*=token-sys-1", "not a member id"),
    ],
)
def test_malformed_moderator_tokens_are_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidSetting, match=problem):
        ModeratorTokens.parse(text)


def test_keyed_ids_are_stable_and_unpredictable_without_the_key() -> None:
    parts = ("moderation", "auto_hide", "c1", "post", "p1", "1", "17")
    one = keyed_event_id(KEY, *parts)
    assert one == keyed_event_id(KEY, *parts)
    assert one.version == 4
    assert one != keyed_event_id(b"j" * 32, *parts)
    assert one != derived_event_id(*parts)
    assert one != keyed_event_id(KEY, *parts[:-1], "18")
    with pytest.raises(InvalidIdKey):
        keyed_event_id(b"short", *parts)


def test_the_embedded_stack_generates_its_id_key_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = id_key(settings)
    assert len(key) >= 32
    assert id_key(settings) == key
    path = tmp_path / "data" / ID_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    configured = "c" * 32
    assert id_key(Settings(data_dir=tmp_path / "data", id_key=configured)) == configured.encode()


def test_with_an_external_nats_the_id_key_must_be_set(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", nats_url="nats://nats:4222")
    with pytest.raises(ConfigError, match="AGORA_ID_KEY is not set"):
        id_key(settings)
    assert not (tmp_path / "data").exists()
