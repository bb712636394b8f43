"""Event id helpers: random ids for live events, derived ids for replayable imports.

:func:`derived_event_id` is a function of its (often public) parts, so anyone can compute it;
:func:`keyed_event_id` mixes in a deployment secret, so only the holder of the key can. An id a
service derives must be keyed: the stream deduplicates by id, and a producer who can predict an
id can publish another event under it first.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Final

from events.errors import EventError

#: Namespace of derived event ids (uuid5). Changing it would change every derived id.
NAMESPACE: Final = uuid.UUID("6f1d3a52-8f0e-4a55-9a39-2b8d6f3c0a11")


def new_event_id() -> uuid.UUID:
    """Return a fresh random event id (UUID4)."""
    return uuid.uuid4()


def derived_event_id(*parts: str) -> uuid.UUID:
    """Return the same id for the same parts, so re-publishing the same fact stores it once.

    Importers and reactors use it: ``derived_event_id("se", "beer", "post", "42")``.
    """
    return uuid.uuid5(NAMESPACE, "\x1f".join(parts))


class InvalidIdKey(EventError, ValueError):
    """The key given to :func:`keyed_event_id` is too short."""


#: Shortest key :func:`keyed_event_id` accepts, in bytes (128 bits, if random).
MIN_KEY_BYTES: Final = 16


def keyed_event_id(key: bytes, *parts: str) -> uuid.UUID:
    """Return the same id for the same key and parts, unpredictable without the key.

    HMAC-SHA256 of the parts (joined as for :func:`derived_event_id`), its first 16 bytes made
    a version-4 UUID (the bits are as random as the HMAC, to anyone without the key).
    """
    if len(key) < MIN_KEY_BYTES:
        raise InvalidIdKey(f"the id key must have at least {MIN_KEY_BYTES} bytes")
    digest = hmac.new(key, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)
