"""Moderator tokens: a shared secret per moderator, naming the decision's actor and its communities.

Configured as ``member@communities=token`` entries separated by commas (``AGORA_MODERATOR_TOKENS``),
where ``communities`` is a ``|``-separated list of community ids, or ``*`` for every community --
the same scope as an ingest producer's grant, and as explicit: an entry without its communities is
refused. For example ``mod1@c42|c43=<token>,lead@*=<token>``. A request carries the token (HTTP
``Authorization: Bearer <token>``; NATS header ``Authorization``); the member it belongs to is the
``actor`` of the published ``moderation.decided``, so a moderator cannot decide in another's name,
and a decision in a community outside the token's scope is refused (Forbidden, 403).

Deliberately minimal and self-contained (the ingest service keeps its own token check).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from events.limits import ID_PATTERN
from services.errors import InvalidSetting
from services.moderation.errors import Forbidden, Unauthorized

_MEMBER: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BEARER: Final = "bearer "
_COMMUNITY: Final = re.compile(ID_PATTERN)
#: Tokens shorter than this are refused at configuration time.
MIN_TOKEN_LENGTH: Final = 8
ANY: Final = "*"
"""As a moderator's communities: every community."""


@dataclass(frozen=True, slots=True)
class Moderator:
    """The moderator a token names, and the communities it may decide in (None: every one)."""

    member: str
    communities: frozenset[str] | None

    def may_decide(self, community: str) -> bool:
        """True when the token's scope covers ``community``."""
        return self.communities is None or community in self.communities

    def check(self, community: str) -> None:
        """Raise Forbidden unless the token's scope covers ``community``."""
        if not self.may_decide(community):
            raise Forbidden(f"moderator {self.member!r} may not decide in community {community!r}")


def _scope(member: str, text: str) -> frozenset[str] | None:
    names = text.split("|")
    if names == [ANY]:
        return None
    for name in names:
        if name == ANY:
            raise InvalidSetting(f"moderator {member!r}: {ANY!r} stands alone")
        if not _COMMUNITY.match(name):
            raise InvalidSetting(f"moderator {member!r}: {name!r} is not a community id")
    return frozenset(names)


class ModeratorTokens:
    """Maps tokens to moderators; compares in constant time per configured token."""

    def __init__(
        self,
        tokens: Mapping[str, str],
        scopes: Mapping[str, frozenset[str] | None] | None = None,
    ) -> None:
        """``tokens`` maps a moderator's member id to their token, ``scopes`` to their communities.

        A moderator missing from ``scopes`` may decide in no community at all.
        """
        scopes = scopes or {}
        for member, token in tokens.items():
            if not _MEMBER.match(member) or member == "system":
                raise InvalidSetting(f"moderator id {member!r} is not a member id")
            if len(token) < MIN_TOKEN_LENGTH:
                raise InvalidSetting(
                    f"the token of {member!r} is shorter than {MIN_TOKEN_LENGTH} characters"
                )
        if len(set(tokens.values())) != len(tokens):
            raise InvalidSetting("two moderators share a token")
        self._pairs = [
            (token.encode(), Moderator(member, scopes.get(member, frozenset())))
            for member, token in tokens.items()
        ]

    @classmethod
    def parse(cls, text: str | None) -> ModeratorTokens:
        """Parse ``member@communities=token[,...]``; empty or None gives no moderator at all."""
        tokens: dict[str, str] = {}
        scopes: dict[str, frozenset[str] | None] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            who, sep, token = part.strip().partition("=")
            if not sep or not who or not token:
                raise InvalidSetting("moderator tokens must be member@communities=token entries")
            member, at, communities = who.partition("@")
            if not at or not communities:
                raise InvalidSetting(
                    f"moderator {member!r} has no communities: write "
                    f"{member}@<community>|<community>=<token>, or {member}@*=<token> for all"
                )
            if member in tokens:
                raise InvalidSetting(f"moderator {member!r} is listed twice")
            tokens[member] = token
            scopes[member] = _scope(member, communities)
        return cls(tokens, scopes)

    def __len__(self) -> int:
        return len(self._pairs)

    def moderator(self, token: str | None) -> Moderator:
        """The moderator ``token`` belongs to; Unauthorized if it belongs to none."""
        if not token:
            raise Unauthorized("a moderator token is required")
        given = token.encode()
        found: Moderator | None = None
        for expected, member in self._pairs:  # no early exit: the time does not tell which
            if hmac.compare_digest(given, expected):
                found = member
        if found is None:
            raise Unauthorized("unknown moderator token")
        return found

    def from_header(self, value: str | None) -> Moderator:
        """The moderator of an ``Authorization`` header (``Bearer <token>``, or the bare token)."""
        if value is None:
            return self.moderator(None)
        text = value.strip()
        if text.lower().startswith(_BEARER):
            text = text[len(_BEARER) :].strip()
        return self.moderator(text)
