"""The moderation projection's tunables: one frozen object, fingerprinted into the version.

Every number that changes what the fold writes (weights, trust ladder, decay, cooldown, thresholds)
lives in :class:`ModerationSettings`. Its fingerprint is part of the projection's version
(:func:`version_of`), so changing a value makes the supervisor rebuild the tables by replay instead
of mixing two scorings in one table. Fields marked ``rebuild=False`` (the SLA) are read by the
dashboard queries only and do not change the version.

Scores are integers in thousandths of a point ("milli-points"): ``2500`` is 2.5 points. Integer
arithmetic keeps every stored value exactly reproducible, whatever the platform or batch size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, get_args

from events.fields import ReportReason

MILLI: Final = 1000
"""Milli-points per point."""

REPORT_REASONS: Final[tuple[ReportReason, ...]] = get_args(ReportReason)
"""Every report reason of the event contract."""

FOLD_REVISION: Final = 3
"""Revision of the fold and tables; bump it when their meaning changes (not for settings).

3: the engine keys seen events by community and id with a content digest (a rebuild).
"""

_VERSION_SPAN: Final = 1_000_000
"""The settings fingerprint takes the low six decimal digits of the version."""


@dataclass(frozen=True, slots=True)
class TrustLevel:
    """One rung of the standing ladder: what a member needs to reach ``level``.

    All three conditions must hold. Tenure counts from the member's first ``member.joined`` to the
    report's event time; contributions are posts, replies and accepted answers seen in the log;
    agreed reports are the member's earlier reports a moderator agreed with.
    """

    level: int
    min_tenure_days: int
    min_contributions: int
    min_agreed_reports: int = 0


DEFAULT_TRUST_LEVELS: Final = (
    TrustLevel(1, min_tenure_days=1, min_contributions=1),
    TrustLevel(2, min_tenure_days=15, min_contributions=5),
    TrustLevel(3, min_tenure_days=50, min_contributions=20),
    TrustLevel(4, min_tenure_days=100, min_contributions=50, min_agreed_reports=5),
)
"""Discourse-like trust levels 1-4, from what the event log shows (no reading time here)."""

DEFAULT_REASON_BONUS: Final[tuple[tuple[ReportReason, int], ...]] = (
    ("illegal", 5000),
    ("harassment", 3000),
    ("spam", 2000),
    ("inappropriate", 1000),
    ("off_topic", 0),
    ("other", 0),
)
"""Bonus per report reason in milli-points: illegal > harassment > spam > inappropriate > rest."""


@dataclass(frozen=True, slots=True)
class ModerationSettings:
    """Everything that tunes the moderation queue; immutable, validated on creation."""

    base_weight: int = MILLI
    """Every report starts at this many milli-points (Discourse's ``1.0``)."""
    standing_weight: int = MILLI
    """Milli-points per level of standing (Discourse adds the trust level, 0-4, staff 5)."""
    staff_standing: int = 5
    """Standing of a member seen deciding as a moderator in the community."""
    trust_levels: tuple[TrustLevel, ...] = DEFAULT_TRUST_LEVELS
    """The ladder, lowest level first; a member gets the highest level whose conditions hold."""
    sanction_penalty: int = 1
    """Levels of standing lost per approved moderator decision against the member."""
    reason_bonus: tuple[tuple[ReportReason, int], ...] = DEFAULT_REASON_BONUS
    """Milli-points added per reason; every reason appears exactly once."""

    accuracy_min_flags: int = 5
    """No accuracy bonus until a reporter has *more* than this many (decayed) resolved reports."""
    accuracy_axis: Fraction = Fraction(7, 10)
    """Agreement ratio that earns no bonus; above it the bonus is positive, below negative."""
    accuracy_max_bonus: int = 5 * MILLI
    """Scale of the bonus: ``max_bonus * log4(resolved reports)`` at 100 % or 0 % agreement."""
    decay_period_days: int = 30
    """Outcomes are bucketed by periods of this many days of event time."""
    decay_retention: Fraction = Fraction(9, 10)
    """Weight kept by an outcome per period of age (0.9: half-life of about 6.6 periods)."""
    decay_window_periods: int = 24
    """Outcomes older than this many periods are forgotten."""

    cooldown_hours: int = 24
    """A reporter's report on a target resolved less than this ago (same reason) cannot reopen it,
    unless the post was edited after that resolution."""

    medium_priority: int = 5 * MILLI
    """Items at or above this score are of medium priority."""
    high_priority: int = 12 * MILLI
    """Items at or above this score are of high priority."""
    auto_hide_score: int = 15 * MILLI
    """A pending post or reply reaching this score is marked for hiding (once per round)."""

    sla_hours: int = field(default=24, metadata={"rebuild": False})
    """Items pending longer than this breach the team's SLA (dashboard queries only)."""

    def __post_init__(self) -> None:
        """Refuse settings the fold cannot use; a clear error beats a wrong queue."""
        problems: list[str] = []
        reasons = [reason for reason, _ in self.reason_bonus]
        if sorted(reasons) != sorted(REPORT_REASONS):
            problems.append(f"reason_bonus must name each of {REPORT_REASONS} exactly once")
        levels = [t.level for t in self.trust_levels]
        if levels != sorted(set(levels)) or any(level < 1 for level in levels):
            problems.append("trust_levels must have increasing levels >= 1")
        for lower, higher in zip(self.trust_levels, self.trust_levels[1:], strict=False):
            if (
                higher.min_tenure_days < lower.min_tenure_days
                or higher.min_contributions < lower.min_contributions
                or higher.min_agreed_reports < lower.min_agreed_reports
            ):
                problems.append(f"trust level {higher.level} asks less than level {lower.level}")
        if not Fraction(0) < self.accuracy_axis < Fraction(1):
            problems.append("accuracy_axis must be strictly between 0 and 1")
        if not Fraction(0) < self.decay_retention <= Fraction(1):
            problems.append("decay_retention must be in (0, 1]")
        for name in ("decay_period_days", "decay_window_periods"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("accuracy_min_flags", "cooldown_hours", "sla_hours", "sanction_penalty"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not 0 <= self.medium_priority <= self.high_priority:
            problems.append("need 0 <= medium_priority <= high_priority")
        if problems:
            raise ValueError("invalid moderation settings: " + "; ".join(problems))

    def bonus_for(self, reason: ReportReason) -> int:
        """The reason's bonus in milli-points."""
        for name, bonus in self.reason_bonus:
            if name == reason:
                return bonus
        raise KeyError(reason)  # pragma: no cover - __post_init__ guarantees every reason


DEFAULT_SETTINGS: Final = ModerationSettings()
"""The settings Agora ships with."""


def _plain(value: Any) -> Any:
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def fingerprint(settings: ModerationSettings) -> str:
    """SHA-256 of the settings that change the fold (canonical JSON; ``rebuild=False`` left out)."""
    data = {
        f.name: _plain(dataclasses.asdict(settings)[f.name])
        for f in dataclasses.fields(settings)
        if f.metadata.get("rebuild", True)
    }
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def version_of(settings: ModerationSettings, revision: int = FOLD_REVISION) -> int:
    """The projection version for ``settings``: ``revision * 1_000_000 + 6 fingerprint digits``.

    Any change of a fold setting changes the version (barring a one-in-a-million collision), so the
    supervisor rebuilds; the value still fits the engine's 32-bit version column up to revision
    2146.
    """
    return revision * _VERSION_SPAN + int(fingerprint(settings), 16) % _VERSION_SPAN
