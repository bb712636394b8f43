"""Producer API tokens: who may publish what, configured as SHA-256 hashes, never in plain text.

A grant is configured as a JSON object (one per producer)::

    {"producer": "forum-web",
     "sha256": "<64 hex digits: SHA-256 of the token's UTF-8 bytes>",
     "communities": ["c42", "c43"],       # or ["*"]: every community
     "types": ["post.created", "reply.created"]}   # or ["*"]: every event type

The configuration value (``AGORA_INGEST_TOKENS``) is either a JSON array of such objects, written
inline (the value starts with ``[``), or the path of a file holding that array. Tokens must be
random (at least 128 bits, e.g. ``secrets.token_urlsafe(32)``): a plain SHA-256 is then as good
as a password hash, and it keeps the configuration free of secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Final

import msgspec

from events.catalogue import EVENT_TYPES
from events.limits import ID_PATTERN
from services.errors import InvalidSetting

ANY: Final = "*"
"""In ``communities`` or ``types``: every community, every event type."""

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_ID = re.compile(ID_PATTERN)
_KNOWN_TYPES: Final = frozenset(cls.TYPE for cls in EVENT_TYPES)


class InvalidTokenConfig(InvalidSetting):
    """The token configuration is malformed; the service refuses to start."""


class _GrantConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One producer's entry in the token configuration, as written."""

    producer: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    sha256: str
    communities: list[str]
    types: list[str]


class Grant(msgspec.Struct, frozen=True):
    """What one producer's token allows: a set of communities and a set of event types.

    ``communities`` / ``types`` are None when every community / type is allowed.
    """

    producer: str
    digest: bytes
    communities: frozenset[str] | None
    types: frozenset[str] | None

    def refusal(self, community: str, type_: str) -> tuple[str, str] | None:
        """Return ``(field, reason)`` if this grant does not cover the event, else None."""
        if self.communities is not None and community not in self.communities:
            return "community", f"producer {self.producer!r} may not publish to {community!r}"
        if self.types is not None and type_ not in self.types:
            return "type", f"producer {self.producer!r} may not publish {type_!r} events"
        return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token's UTF-8 bytes, as the configuration stores it."""
    return _digest(token).hex()


class Grants:
    """The configured grants, looked up by the token a request presents."""

    def __init__(self, grants: Iterable[Grant]) -> None:
        self.grants: Final = tuple(grants)
        producers = [g.producer for g in self.grants]
        if len(set(producers)) != len(producers):
            raise InvalidTokenConfig("two grants have the same producer name")
        if len({g.digest for g in self.grants}) != len(self.grants):
            raise InvalidTokenConfig("two grants have the same token hash")

    def lookup(self, token: str | None) -> Grant | None:
        """Return the grant of ``token``, or None for a missing or unknown token.

        Every configured hash is compared, in constant time each, whatever matches.
        """
        if not token:
            return None
        digest = _digest(token)
        found: Grant | None = None
        for grant in self.grants:
            if hmac.compare_digest(grant.digest, digest):
                found = grant
        return found

    def __len__(self) -> int:
        return len(self.grants)


def _scope(values: Sequence[str], what: str, producer: str) -> frozenset[str] | None:
    if not values:
        raise InvalidTokenConfig(f"{producer}: {what} is empty (the token would allow nothing)")
    if ANY in values:
        if len(values) > 1:
            raise InvalidTokenConfig(f"{producer}: {what}: {ANY!r} stands alone")
        return None
    for value in values:
        if what == "communities" and not _ID.match(value):
            raise InvalidTokenConfig(f"{producer}: {value!r} is not a community id")
        if what == "types" and value not in _KNOWN_TYPES:
            raise InvalidTokenConfig(f"{producer}: {value!r} is not an event type")
    return frozenset(values)


def parse_grants(data: bytes | str) -> Grants:
    """Parse the JSON array of grants; raise InvalidTokenConfig naming what is wrong."""
    try:
        entries = msgspec.json.decode(data, type=list[_GrantConfig])
    except msgspec.ValidationError as error:
        raise InvalidTokenConfig(f"token configuration: {error}") from None
    except msgspec.DecodeError as error:
        raise InvalidTokenConfig(f"token configuration is not valid JSON: {error}") from None
    grants = []
    for entry in entries:
        if not _HEX64.match(entry.sha256):
            raise InvalidTokenConfig(
                f"{entry.producer}: sha256 must be 64 hex digits (the hash, not the token)"
            )
        grants.append(
            Grant(
                producer=entry.producer,
                digest=bytes.fromhex(entry.sha256),
                communities=_scope(entry.communities, "communities", entry.producer),
                types=_scope(entry.types, "types", entry.producer),
            )
        )
    return Grants(grants)


def load_grants(value: str) -> Grants:
    """Read grants from a configuration value: inline JSON (starts with ``[``) or a file path."""
    text = value.strip()
    if text.startswith("["):
        return parse_grants(text)
    try:
        data = Path(text).read_bytes()
    except OSError as error:
        raise InvalidTokenConfig(
            f"cannot read the token file {text!r}: {error.strerror or error}"
        ) from None
    return parse_grants(data)
