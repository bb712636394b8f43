"""What the moderation service needs from the moderation queue, as small protocols.

``services`` may not import ``projections``: the edge (``agora/moderation_wiring.py``) implements
these over the moderation projection's stable views, and tests may implement them in memory.
Every method is async; an implementation over a database runs its queries in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A queue item as a decision sees it."""

    target_kind: str
    target: str
    target_author: str
    status: str
    """pending | approved | rejected | ignored"""
    round: int


class QueueLookup(Protocol):
    """Looks up queue items, to refuse decisions on targets nobody reported."""

    async def item(self, community: str, target_kind: str, target: str) -> QueueItem | None:
        """The item of ``target`` in ``community``, or None if it is not in the queue."""
        ...


@dataclass(frozen=True, slots=True)
class HideCandidate:
    """A crossing of the auto-hide threshold that no ``content.hidden`` answers yet."""

    community: str
    target_kind: str
    target: str
    target_author: str
    round: int
    crossed_seq: int
    """Stream sequence of the report that crossed the threshold: identifies the crossing."""
    crossed_at: datetime
    """Event time of that report."""
    score: int
    """Item score at the crossing, milli-points."""


class HideCandidates(Protocol):
    """The read side of the reactor: where the projection is, and what it marked for hiding."""

    async def applied_seq(self) -> int | None:
        """The stream sequence every partition of the *active* generation has applied.

        None when no generation is active (nothing to read yet).
        """
        ...

    async def pending(self, crossed_since: datetime | None, limit: int) -> list[HideCandidate]:
        """Marked items of the active generation with no hide folded since their crossing."""
        ...
