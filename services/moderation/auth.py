"""Moderator tokens: a shared secret per moderator, which also names the decision's actor.

Configured as ``member=token`` pairs separated by commas (``AGORA_MODERATOR_TOKENS``). A request
carries the token (HTTP ``Authorization: Bearer <token>``; NATS header ``Authorization``); the
member it belongs to is the ``actor`` of the published ``moderation.decided``, so a moderator
cannot decide in another's name. Tokens are not scoped to communities.

Deliberately minimal and self-contained (the ingest service keeps its own token check).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Final

from services.errors import InvalidSetting
from services.moderation.errors import Unauthorized

_MEMBER: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BEARER: Final = "bearer "
#: Tokens shorter than this are refused at configuration time.
MIN_TOKEN_LENGTH: Final = 8


class ModeratorTokens:
    """Maps tokens to moderators; compares in constant time per configured token."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """``tokens`` maps a moderator's member id to their token."""
        for member, token in tokens.items():
            if not _MEMBER.match(member) or member == "system":
                raise InvalidSetting(f"moderator id {member!r} is not a member id")
            if len(token) < MIN_TOKEN_LENGTH:
                raise InvalidSetting(
                    f"the token of {member!r} is shorter than {MIN_TOKEN_LENGTH} characters"
                )
        if len(set(tokens.values())) != len(tokens):
            raise InvalidSetting("two moderators share a token")
        self._pairs = [(token.encode(), member) for member, token in tokens.items()]

    @classmethod
    def parse(cls, text: str | None) -> ModeratorTokens:
        """Parse ``member=token[,member=token...]``; empty or None gives no moderator at all."""
        tokens: dict[str, str] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            member, sep, token = part.strip().partition("=")
            if not sep or not member or not token:
                raise InvalidSetting("moderator tokens must be member=token pairs")
            if member in tokens:
                raise InvalidSetting(f"moderator {member!r} is listed twice")
            tokens[member] = token
        return cls(tokens)

    def __len__(self) -> int:
        return len(self._pairs)

    def moderator(self, token: str | None) -> str:
        """The moderator ``token`` belongs to; Unauthorized if it belongs to none."""
        if not token:
            raise Unauthorized("a moderator token is required")
        given = token.encode()
        found: str | None = None
        for expected, member in self._pairs:  # no early exit: the time does not tell which
            if hmac.compare_digest(given, expected):
                found = member
        if found is None:
            raise Unauthorized("unknown moderator token")
        return found

    def from_header(self, value: str | None) -> str:
        """The moderator of an ``Authorization`` header (``Bearer <token>``, or the bare token)."""
        if value is None:
            return self.moderator(None)
        text = value.strip()
        if text.lower().startswith(_BEARER):
            text = text[len(_BEARER) :].strip()
        return self.moderator(text)
