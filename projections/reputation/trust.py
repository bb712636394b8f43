"""Trust levels from reputation and behaviour, in the spirit of Discourse's TL0-TL4.

A member holds the highest level whose requirements all hold (and every level below it), judged
at the event time of the last event that changed their row: a member who is banned, or suspended
past that time, is at level 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from projections.reputation.rules import RuleSet, TrustLevel


@dataclass(frozen=True, slots=True)
class Standing:
    """What trust levels are judged on: one member's reputation and behaviour counters."""

    reputation: int
    contributions: int = 0
    days_active: int = 0
    reactions_given: int = 0
    reactions_received: int = 0
    reports_upheld: int = 0
    banned: bool = False
    suspended_until: datetime | None = None


def meets(level: TrustLevel, standing: Standing) -> bool:
    """Whether ``standing`` satisfies every requirement of ``level``."""
    return (
        standing.reputation >= level.min_reputation
        and standing.contributions >= level.min_contributions
        and standing.days_active >= level.min_days_active
        and standing.reactions_given >= level.min_reactions_given
        and standing.reactions_received >= level.min_reactions_received
        and (
            level.max_reports_upheld is None or standing.reports_upheld <= level.max_reports_upheld
        )
    )


def trust_level(rules: RuleSet, standing: Standing, at: datetime) -> int:
    """The trust level (0..4) of a member with ``standing`` at event time ``at``."""
    if standing.banned:
        return 0
    if standing.suspended_until is not None and standing.suspended_until > at:
        return 0
    reached = 0
    for level in rules.trust_levels:
        if not meets(level, standing):
            break
        reached = level.level
    return reached
