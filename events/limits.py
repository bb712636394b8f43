"""Documented limits of the event contract (see docs/events.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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

#: Earliest and latest event time the contract accepts (``occurred_at``, ``until``), inclusive.
#: 1970 is the Unix epoch (nothing in a community happened before it); the year-2999 ceiling
#: leaves every fold and dashboard centuries of headroom for date arithmetic (a week, a window)
#: below Python's ``datetime.max``, which is what made a 9999-12-31 event crash a fold.
MIN_EVENT_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_EVENT_TIME: Final = datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)

#: Pattern of every timestamp on the wire: RFC 3339 with an upper-case ``T``, at most six
#: fractional digits (microseconds, what the decoder keeps), offset ``Z`` or ``+00:00``, years
#: 1970 to 2999 (so the pattern alone enforces the range above; leap seconds (``:60``) are
#: refused, Python cannot represent them). The calendar (no 30 February) is checked by the
#: decoder and by JSON Schema's ``format: date-time``.
TIME_PATTERN: Final = (
    r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|\+00:00)$(?!\n)"
)

#: Pattern of event ids: a canonical UUID, lower-case and hyphenated (one spelling per id, so
#: the stream's dedupe key ``Nats-Msg-Id`` and the id in the payload cannot disagree in case).
UUID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$(?!\n)"

#: Pattern of free text (titles, bodies, notes, display names, rules): no C0 control character
#: but TAB, LF and CR, and no DEL. PostgreSQL text cannot hold NUL; the other controls are
#: invisible or harmful in a browser and never typed by a person.
TEXT_PATTERN: Final = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

#: Default and largest allowed clock skew: how far past the publisher's (or the ingest
#: service's) clock an ``occurred_at`` may lie. Checked where a clock is, never in a fold.
DEFAULT_MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
MAX_FUTURE_SKEW_LIMIT: Final = timedelta(days=1)

#: What a field the decoder does not know (a newer producer's addition) may carry. Its name is
#: snake_case; its value is JSON nested at most this deep (a scalar is depth 0, a list of
#: scalars depth 1), its numbers are finite and within +/- MAX_SAFE_INTEGER (exact in every JSON
#: parser), its strings are free text. The byte limit bounds the rest.
EXTRA_FIELD_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$(?!\n)"
MAX_EXTRA_DEPTH: Final = 4
MAX_SAFE_INTEGER: Final = 2**53 - 1
