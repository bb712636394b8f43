"""Pure scoring: a report's weight, a reporter's standing and accuracy, an item's priority.

Modelled on Discourse's reviewable score (``app/models/reviewable_score.rb``)::

    score(report)        = max(0, user_flag_score + type_bonus + take_action_bonus)
    user_flag_score      = 1.0 + trust_level (5 for staff) + user_accuracy_bonus
    user_accuracy_bonus  = 0                                     if agreed + disagreed <= 5
                         = +(p - 0.7) / 0.3 * 5 * log4(total)    if p >= 0.7
                         = -(0.7 - p) / 0.7 * 5 * log4(total)    otherwise,  p = agreed / total

and an item's score is the sum of its pending and agreed scores (``Reviewable#recalculate_score``).

Agora keeps that shape and adds recency: agreed and disagreed outcomes are counted per period of
event time and weighted by ``retention ** age`` (exponential decay), so ``p`` and ``total`` above
are recency-weighted and a reporter's old mistakes (or old merit) fade. With ``retention = 1`` the
bonus is Discourse's, to the milli-point. There is no "take action" flag in Agora's events.

Everything here is integer or exact rational arithmetic -- no floats, no libm -- so a score
computed on one machine is bit-for-bit the score computed on any other, in any batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import cache
from typing import Final, Literal, assert_never

from events.fields import Decision, ReportReason
from projections.moderation.settings import MILLI, REPORT_REASONS, ModerationSettings

PPM: Final = 1_000_000
"""Decayed outcome counts are integers in millionths of an outcome."""

LOG_BITS: Final = 32
"""Fractional bits of the fixed-point binary logarithm."""

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Outcome = Literal["approved", "rejected"]
"""What a moderator decision does to an item's open reports."""

Priority = Literal["low", "medium", "high"]
"""Priority band of a queue item, from its score."""


@dataclass(frozen=True, slots=True)
class Weight:
    """A report's weight and where it comes from (all in milli-points but ``standing``)."""

    standing: int
    """Trust level 0-4, or the staff standing, after sanctions."""
    accuracy_bonus: int
    """The reporter's recency-weighted accuracy bonus; negative for a poor record."""
    reason_bonus: int
    """The bonus of the report's reason."""
    total: int
    """``max(0, base + standing * standing_weight + accuracy_bonus + reason_bonus)``."""


@dataclass(frozen=True, slots=True)
class Standing:
    """What the log tells about a member, as the standing rule needs it."""

    staff: bool = False
    """Seen deciding as a moderator in the community."""
    tenure: timedelta | None = None
    """Time since the member first joined, at the report's event time; None if never seen."""
    contributions: int = 0
    """Posts, replies and accepted answers."""
    agreed_reports: int = 0
    """Earlier reports a moderator agreed with (lifetime, not decayed)."""
    sanctions: int = 0
    """Approved moderator decisions against the member or their content."""


def outcome_of(decision: Decision) -> Outcome:
    """``dismiss`` and ``keep`` reject the reports; every other decision approves them."""
    match decision:
        case "dismiss" | "keep":
            return "rejected"
        case "hide" | "remove" | "warn" | "suspend" | "ban":
            return "approved"
        case _:
            assert_never(decision)


def period_of(at: datetime, period_days: int) -> int:
    """The decay period of an event time: whole ``period_days`` since 1970-01-01 (floored)."""
    return (at - EPOCH).days // period_days


def window(period: int, settings: ModerationSettings) -> range:
    """The periods whose outcomes count for a report made in ``period``."""
    return range(period - settings.decay_window_periods + 1, period + 1)


@cache
def decay_factors(retention: Fraction, periods: int) -> tuple[int, ...]:
    """``round(retention ** age * PPM)`` for ages 0..periods-1, computed exactly."""
    return tuple(round(retention**age * PPM) for age in range(periods))


def decayed_outcomes(
    buckets: Mapping[int, tuple[int, int]], period: int, settings: ModerationSettings
) -> tuple[int, int]:
    """Recency-weighted (agreed, disagreed) counts, in PPM, as of ``period``.

    ``buckets`` maps a period to the (agreed, disagreed) outcomes recorded in it. Outcomes from the
    future (a later event time folded earlier) or beyond the window do not count.
    """
    factors = decay_factors(settings.decay_retention, settings.decay_window_periods)
    agreed = disagreed = 0
    for bucket, (agreed_n, disagreed_n) in buckets.items():
        age = period - bucket
        if 0 <= age < len(factors):
            agreed += agreed_n * factors[age]
            disagreed += disagreed_n * factors[age]
    return agreed, disagreed


def log2_fixed(numerator: int, denominator: int, bits: int = LOG_BITS) -> int:
    """``floor(log2(numerator / denominator) * 2**bits)`` (to within one unit), integers only.

    The classic digit-by-digit binary logarithm: normalise to [1, 2), then square repeatedly;
    each squaring that reaches 2 is a one bit. Needs ``numerator >= denominator > 0``.
    """
    if denominator <= 0 or numerator < denominator:
        raise ValueError("log2_fixed needs numerator >= denominator > 0")
    shift = numerator.bit_length() - denominator.bit_length()
    if numerator < denominator << shift:
        shift -= 1
    precision = bits + 16  # guard bits against truncation in the squarings
    one = 1 << precision
    y = (numerator << precision) // (denominator << shift)  # in [1, 2) as fixed point
    fraction = 0
    for _ in range(bits):
        y = (y * y) >> precision
        fraction <<= 1
        if y >= 2 * one:
            y >>= 1
            fraction |= 1
    return (shift << bits) | fraction


def accuracy_bonus(agreed: int, disagreed: int, settings: ModerationSettings) -> int:
    """The accuracy bonus in milli-points from (decayed) agreed/disagreed counts in PPM.

    Discourse's ``calc_user_accuracy_bonus`` with the axis, scale and minimum from ``settings``:
    zero until more than ``accuracy_min_flags`` resolved reports, then
    ``± distance-from-axis * max_bonus * log4(total)``, rounded half to even.
    """
    total = agreed + disagreed
    if total <= settings.accuracy_min_flags * PPM or total < PPM:
        return 0
    ratio = Fraction(agreed, total)
    axis = settings.accuracy_axis
    # Above the axis, scaled to [0, 1] over (axis, 1]; below it, to [-1, 0) over [0, axis).
    distance = (ratio - axis) / (1 - axis) if ratio >= axis else -(axis - ratio) / axis
    log4 = Fraction(log2_fixed(total, PPM), 2 << LOG_BITS)
    return round(distance * settings.accuracy_max_bonus * log4)


def standing_level(member: Standing, settings: ModerationSettings) -> int:
    """Trust level from tenure, contributions and agreed reports, minus sanctions; staff is fixed.

    The highest rung of ``settings.trust_levels`` whose three conditions hold; 0 for a member
    never seen joining. Each sanction costs ``sanction_penalty`` levels (not below 0).
    """
    if member.staff:
        return settings.staff_standing
    level = 0
    if member.tenure is not None:
        for rung in settings.trust_levels:
            if (
                member.tenure >= timedelta(days=rung.min_tenure_days)
                and member.contributions >= rung.min_contributions
                and member.agreed_reports >= rung.min_agreed_reports
            ):
                level = rung.level
    return max(0, level - member.sanctions * settings.sanction_penalty)


def report_weight(
    member: Standing,
    agreed: int,
    disagreed: int,
    reason: ReportReason,
    settings: ModerationSettings,
) -> Weight:
    """A report's weight: base + standing + accuracy bonus + reason bonus, floored at 0.

    ``agreed`` and ``disagreed`` are the reporter's decayed outcomes (PPM), see
    :func:`decayed_outcomes`.
    """
    level = standing_level(member, settings)
    bonus = accuracy_bonus(agreed, disagreed, settings)
    reason_bonus = settings.bonus_for(reason)
    total = settings.base_weight + level * settings.standing_weight + bonus + reason_bonus
    return Weight(level, bonus, reason_bonus, max(0, total))


def priority_of(score: int, settings: ModerationSettings) -> Priority:
    """The priority band of an item's score (milli-points)."""
    if score >= settings.high_priority:
        return "high"
    if score >= settings.medium_priority:
        return "medium"
    return "low"


def severity_key(reason: ReportReason, settings: ModerationSettings) -> tuple[int, int]:
    """Sort key of reasons, most severe first: higher bonus, then the catalogue's order."""
    return (-settings.bonus_for(reason), REPORT_REASONS.index(reason))


def seconds_between(start: datetime, end: datetime) -> int:
    """Whole seconds from ``start`` to ``end``, 0 if ``end`` is earlier (skewed clocks)."""
    delta = end - start
    return max(0, delta.days * 86_400 + delta.seconds)


def milli_to_points(value: int) -> Fraction:
    """Milli-points as an exact number of points (for display)."""
    return Fraction(value, MILLI)
