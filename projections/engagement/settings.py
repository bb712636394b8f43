"""The engagement projection's constants and the dashboard queries' defaults.

What changes what the fold writes is a module constant here, covered by :data:`FOLD_REVISION`
(bump it, and the projection's version, when one changes: the tables are rebuilt by replay).
What only the queries read (the crisis threshold, the inactivity horizon) is a default of
:class:`QueryDefaults`, passed at query time, so changing it needs no rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from events.fields import ReactionKind

FOLD_REVISION: Final = 3
"""Revision of the fold and tables: the projection's version (2: anonymous reactions are
nobody's activity; 3: the engine keys seen events by community and id with a content digest)."""

NEGATIVE_REACTIONS: Final[frozenset[ReactionKind]] = frozenset({"downvote"})
"""Reaction kinds counted as negative by the crisis signal."""

WAU_DAYS: Final = 7
"""Length of the weekly-active window, in days, ending on (and including) the day."""

MAU_DAYS: Final = 30
"""Length of the monthly-active window, in days, ending on (and including) the day."""

COHORT_WEEKS: Final = 12
"""Weeks after the join week tracked per cohort (offsets 0..12; 0 is the join week)."""


@dataclass(frozen=True, slots=True)
class QueryDefaults:
    """Defaults of the query-time parameters; none of them is stored in the tables."""

    crisis_k: float = 3.0
    """An hour alerts when its signal exceeds the trailing mean by more than k std deviations."""
    crisis_baseline_hours: int = 168
    """The trailing window an hour is compared with: the 7 days of hours before it."""
    crisis_min_signal: int = 3
    """An hour needs at least this many reports + negative reactions to alert at all."""
    inactive_days: int = 30
    """A member with no activity for this many days is counted as churned."""


DEFAULTS: Final = QueryDefaults()
"""The defaults the queries use."""
