"""Documented limits of the event contract (see docs/events.md)."""

from __future__ import annotations

from typing import Final

#: Largest encoded event (JSON bytes) the contract accepts. Well below NATS' default 1 MiB
#: ``max_payload`` so that headers and a future envelope always fit.
MAX_EVENT_BYTES: Final = 64 * 1024

#: Identifiers (community, member, post, reply, report) are NATS subject tokens: ASCII letters,
#: digits, ``_`` and ``-``, 1 to this many characters.
MAX_ID_LENGTH: Final = 64

#: Pattern every identifier matches.
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$(?!\n)"
"""(msgspec matches with ``re.search``, where ``$`` alone would allow a final newline.)"""

#: Longest post title, in characters.
MAX_TITLE_LENGTH: Final = 300

#: Longest body (post, reply) in characters; the byte limit above still applies.
MAX_BODY_LENGTH: Final = 32_000

#: Longest free-text note (reports, moderator decisions, reasons).
MAX_NOTE_LENGTH: Final = 2_000

#: Most tags on a post, and the longest tag.
MAX_TAGS: Final = 10
MAX_TAG_LENGTH: Final = 50

#: The reserved actor id for automation (rules, importers, the moderation reactor).
SYSTEM_ACTOR: Final = "system"
