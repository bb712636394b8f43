"""Event id helpers: random ids for live events, derived ids for replayable imports."""

from __future__ import annotations

import uuid
from typing import Final

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
