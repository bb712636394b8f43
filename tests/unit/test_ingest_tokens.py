"""Ingest token grants: parsing the configuration, looking tokens up by hash, the grant check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from services.errors import ServiceError
from services.ingest.tokens import (
    Grant,
    Grants,
    InvalidTokenConfig,
    hash_token,
    load_grants,
    parse_grants,
)

TOKEN = "tok-forum-0123456789abcdef"
OTHER = "tok-bot-fedcba9876543210"


def entry(token: str = TOKEN, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "producer": "forum-web",
        "sha256": hash_token(token),
        "communities": ["c42", "c43"],
        "types": ["post.created", "reply.created"],
    }
    base.update(overrides)
    return base


def test_hash_token_is_the_hex_sha256_of_the_utf8_bytes() -> None:
    assert hash_token("secret") == hashlib.sha256(b"secret").hexdigest()
    assert len(hash_token(TOKEN)) == 64


def test_lookup_finds_the_grant_of_a_configured_token() -> None:
    grants = parse_grants(
        json.dumps([entry(), entry(OTHER, producer="bot", communities=["*"], types=["*"])])
    )
    forum = grants.lookup(TOKEN)
    bot = grants.lookup(OTHER)
    assert forum is not None and forum.producer == "forum-web"
    assert forum.communities == frozenset({"c42", "c43"})
    assert forum.types == frozenset({"post.created", "reply.created"})
    assert bot is not None and bot.producer == "bot"
    assert bot.communities is None and bot.types is None
    assert len(grants) == 2


@pytest.mark.parametrize("token", [None, "", "unknown", TOKEN + "x", TOKEN.upper(), "\udcff"])
def test_lookup_refuses_missing_and_unknown_tokens(token: str | None) -> None:
    assert parse_grants(json.dumps([entry()])).lookup(token) is None


def test_the_configuration_holds_no_plain_token() -> None:
    text = json.dumps([entry()])
    assert TOKEN not in text
    assert parse_grants(text).lookup(TOKEN) is not None


def test_upper_case_hex_is_accepted() -> None:
    grants = parse_grants(json.dumps([entry(sha256=hash_token(TOKEN).upper())]))
    assert grants.lookup(TOKEN) is not None


def test_grant_refusal_names_the_field() -> None:
    grant = parse_grants(json.dumps([entry()])).lookup(TOKEN)
    assert grant is not None
    assert grant.refusal("c42", "post.created") is None
    assert grant.refusal("c43", "reply.created") is None
    field, reason = grant.refusal("c99", "post.created") or ("", "")
    assert field == "community" and "'c99'" in reason and "forum-web" in reason
    field, reason = grant.refusal("c42", "member.joined") or ("", "")
    assert field == "type" and "'member.joined'" in reason


def test_wildcards_allow_everything() -> None:
    grant = Grant("any", b"\0" * 32, None, None)
    assert grant.refusal("whatever", "content.hidden") is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"producer": "x"}', "Expected `array`"),
        (json.dumps([entry(sha256=TOKEN)]), "64 hex digits"),
        (json.dumps([entry(communities=[])]), "communities is empty"),
        (json.dumps([entry(types=[])]), "types is empty"),
        (json.dumps([entry(communities=["*", "c42"])]), "stands alone"),
        (json.dumps([entry(communities=["c.42"])]), "not a community id"),
        (json.dumps([entry(types=["post.made"])]), "not an event type"),
        (json.dumps([{**entry(), "token": TOKEN}]), "unknown field"),
        (json.dumps([entry(), entry(OTHER)]), "same producer"),
        (json.dumps([entry(), entry(producer="twin")]), "same token hash"),
        (json.dumps([entry(producer="")]), "length >= 1"),
    ],
)
def test_malformed_configurations_are_refused(config: str, message: str) -> None:
    with pytest.raises(InvalidTokenConfig, match=message):
        parse_grants(config)


def test_config_errors_are_service_errors() -> None:
    assert issubclass(InvalidTokenConfig, ServiceError)


def test_load_grants_reads_inline_json_or_a_file(tmp_path: Path) -> None:
    text = json.dumps([entry()])
    assert load_grants(f"  {text}").lookup(TOKEN) is not None
    path = tmp_path / "tokens.json"
    path.write_text(text)
    assert load_grants(str(path)).lookup(TOKEN) is not None
    with pytest.raises(InvalidTokenConfig, match="cannot read the token file"):
        load_grants(str(tmp_path / "missing.json"))


def test_an_empty_list_is_valid_and_allows_nobody() -> None:
    grants = Grants([])
    assert grants.lookup(TOKEN) is None
