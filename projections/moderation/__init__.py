"""Moderation: the queue of reported targets, reporter accuracy and the moderation log.

:class:`ModerationQueue` is the projection (fold and tables), :mod:`.scoring` the pure scoring
rules, :mod:`.settings` the tunables and :mod:`.queries` the dashboard's read-only queries.
See docs/moderation.md.
"""

from projections.moderation.projection import TABLES, ModerationQueue
from projections.moderation.settings import (
    DEFAULT_SETTINGS,
    ModerationSettings,
    TrustLevel,
    version_of,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "TABLES",
    "ModerationQueue",
    "ModerationSettings",
    "TrustLevel",
    "version_of",
]
