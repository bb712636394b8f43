"""The pure scoring rules of the moderation queue, checked against Discourse's formulas.

The reference is a line-by-line port of ``ReviewableScore.calc_user_accuracy_bonus`` and
``user_flag_score`` from discourse/discourse ``app/models/reviewable_score.rb``; with decay off,
Agora's integer implementation must agree with it to Discourse's own rounding (0.01 point).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.moderation import (
    DEFAULT_SETTINGS,
    ModerationQueue,
    ModerationSettings,
    TrustLevel,
    version_of,
)
from projections.moderation.scoring import (
    PPM,
    Standing,
    accuracy_bonus,
    decay_factors,
    decayed_outcomes,
    log2_fixed,
    outcome_of,
    period_of,
    priority_of,
    report_weight,
    seconds_between,
    severity_key,
    standing_level,
    window,
)
from projections.moderation.settings import REPORT_REASONS, fingerprint

NO_DECAY = replace(DEFAULT_SETTINGS, decay_retention=Fraction(1))


def discourse_accuracy_bonus(agreed: int, disagreed: int) -> float:
    """Port of Discourse's ReviewableScore.calc_user_accuracy_bonus (points, rounded to 0.01)."""
    total = float(agreed + disagreed)
    if total <= 5:
        return 0.0
    accuracy_axis = 0.7
    percent_correct = agreed / total
    positive_accuracy = percent_correct >= accuracy_axis
    bottom = accuracy_axis if positive_accuracy else 0.0
    top = 1.0 if positive_accuracy else accuracy_axis
    absolute_distance = percent_correct - bottom if positive_accuracy else top - percent_correct
    axis_distance_multiplier = 1.0 / (top - bottom)
    positivity_multiplier = 1.0 if positive_accuracy else -1.0
    return round(
        absolute_distance
        * axis_distance_multiplier
        * positivity_multiplier
        * (math.log(total, 4) * 5.0),
        2,
    )


def undecayed(agreed: int, disagreed: int) -> int:
    """The bonus (milli-points) for outcomes all recorded in the current period."""
    a, d = decayed_outcomes({100: (agreed, disagreed)}, 100, NO_DECAY)
    return accuracy_bonus(a, d, NO_DECAY)


# -- accuracy --------------------------------------------------------------------------------------


def test_without_decay_the_accuracy_bonus_is_discourses() -> None:
    mismatches = []
    for agreed in range(61):
        for disagreed in range(61):
            ours = undecayed(agreed, disagreed)
            theirs = 1000 * discourse_accuracy_bonus(agreed, disagreed)
            if abs(ours - theirs) > 5.0 + 1e-6:  # Discourse rounds to 0.01 point
                mismatches.append((agreed, disagreed, ours, theirs))
    assert mismatches == []


@given(st.integers(0, 5_000), st.integers(0, 5_000))
def test_the_accuracy_bonus_agrees_with_discourse_for_large_records(a: int, d: int) -> None:
    assert abs(undecayed(a, d) - discourse_accuracy_bonus(a, d) * 1000) <= 5.0 + 1e-6


def test_a_few_flags_do_not_swing_the_bonus() -> None:
    assert [undecayed(n, 0) for n in range(6)] == [0] * 6
    assert [undecayed(0, n) for n in range(6)] == [0] * 6
    assert undecayed(6, 0) == 6462  # 5 * log4(6)
    assert undecayed(0, 6) == -6462
    assert undecayed(7, 3) == 0  # exactly on the 70 % axis


def test_recent_outcomes_weigh_more_than_old_ones() -> None:
    now = 50
    old_bad_recent_good = {now - 12: (0, 8), now: (8, 0)}
    old_good_recent_bad = {now - 12: (8, 0), now: (0, 8)}
    a1, d1 = decayed_outcomes(old_bad_recent_good, now, DEFAULT_SETTINGS)
    a2, d2 = decayed_outcomes(old_good_recent_bad, now, DEFAULT_SETTINGS)
    assert accuracy_bonus(a1, d1, DEFAULT_SETTINGS) > 0 > accuracy_bonus(a2, d2, DEFAULT_SETTINGS)
    # Without decay the two records are the same 50 % and weigh the same.
    same = decayed_outcomes(old_good_recent_bad, now, NO_DECAY)
    assert undecayed(8, 8) == accuracy_bonus(*same, NO_DECAY)


def test_the_window_keeps_24_periods_said_literally() -> None:
    """docs/moderation.md: outcomes older than 24 periods are forgotten; age 23 still counts."""
    factor_23 = round(Fraction(9, 10) ** 23 * PPM)
    assert decayed_outcomes({30 - 23: (1, 0), 30 - 24: (0, 1)}, 30, DEFAULT_SETTINGS) == (
        factor_23,
        0,
    )
    assert decayed_outcomes({30: (0, 1), 31: (1, 0)}, 30, DEFAULT_SETTINGS) == (0, PPM)
    assert len(window(30, DEFAULT_SETTINGS)) == 24


def test_decay_factors_are_exact_and_outcomes_outside_the_window_do_not_count() -> None:
    factors = decay_factors(Fraction(9, 10), 24)
    assert factors[0] == PPM and factors[1] == 900_000 and factors[2] == 810_000
    assert factors[23] == round(Fraction(9, 10) ** 23 * PPM)
    assert list(factors) == sorted(factors, reverse=True)
    buckets = {10: (1, 0), 11: (0, 1), 10 - 24: (5, 5), 12: (7, 7)}  # 12 is in the future
    assert decayed_outcomes(buckets, 11, DEFAULT_SETTINGS) == (900_000, 1_000_000)
    assert list(window(11, DEFAULT_SETTINGS)) == list(range(-12, 12))


@given(
    st.integers(1, 10**30),
    st.integers(1, 10**12),
)
def test_the_fixed_point_logarithm_is_within_one_unit_of_log2(a: int, b: int) -> None:
    num, den = max(a, b), min(a, b)
    exact = math.log2(Fraction(num, den))
    fixed = log2_fixed(num, den) / 2**32
    assert abs(fixed - exact) < 2**-26


def test_the_fixed_point_logarithm_refuses_values_below_one() -> None:
    with pytest.raises(ValueError):
        log2_fixed(1, 2)
    assert log2_fixed(1, 1) == 0
    assert log2_fixed(4, 1) == 2 << 32


# -- standing, weight, priority --------------------------------------------------------------------

DAY = timedelta(days=1)
MICRO = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("member", "level"),
    [
        (Standing(), 0),
        (Standing(tenure=DAY * 400, contributions=500), 3),  # level 4 needs agreed reports
        (Standing(tenure=None, contributions=500, agreed_reports=50), 0),
        (Standing(tenure=DAY * 0.5, contributions=3), 0),
        (Standing(tenure=DAY, contributions=1), 1),
        (Standing(tenure=DAY - MICRO, contributions=1), 0),
        (Standing(tenure=DAY, contributions=0), 0),
        (Standing(tenure=DAY * 15, contributions=5), 2),
        (Standing(tenure=DAY * 15, contributions=4), 1),
        (Standing(tenure=DAY * 15 - MICRO, contributions=5), 1),
        (Standing(tenure=DAY * 50, contributions=20), 3),
        (Standing(tenure=DAY * 50, contributions=19), 2),
        (Standing(tenure=DAY * 50 - MICRO, contributions=20), 2),
        (Standing(tenure=DAY * 100, contributions=50, agreed_reports=5), 4),
        (Standing(tenure=DAY * 100, contributions=50, agreed_reports=4), 3),
        (Standing(tenure=DAY * 100, contributions=49, agreed_reports=5), 3),
        (Standing(tenure=DAY * 100 - MICRO, contributions=50, agreed_reports=5), 3),
        (Standing(tenure=DAY * 100, contributions=50, agreed_reports=5, sanctions=2), 2),
        (Standing(tenure=DAY * 15, contributions=5, sanctions=9), 0),
        (Standing(staff=True), 5),
        (Standing(staff=True, sanctions=3), 5),
    ],
)
def test_standing_follows_the_trust_ladder(member: Standing, level: int) -> None:
    assert standing_level(member, DEFAULT_SETTINGS) == level


def test_a_report_weighs_one_plus_standing_plus_accuracy_plus_reason_never_below_zero() -> None:
    trusted = Standing(tenure=DAY * 60, contributions=20)
    weight = report_weight(trusted, 0, 0, "spam", DEFAULT_SETTINGS)
    assert (weight.standing, weight.accuracy_bonus, weight.reason_bonus, weight.total) == (
        3,
        0,
        2000,
        6000,
    )
    staff = report_weight(Standing(staff=True), 6 * PPM, 0, "other", DEFAULT_SETTINGS)
    assert staff.total == 1000 + 5000 + 6462
    poor = report_weight(Standing(), 0, 20 * PPM, "off_topic", DEFAULT_SETTINGS)
    assert poor.accuracy_bonus < -1000 and poor.total == 0


def test_reasons_rank_illegal_harassment_spam_inappropriate_then_the_rest() -> None:
    ranked = sorted(REPORT_REASONS, key=lambda r: severity_key(r, DEFAULT_SETTINGS))
    assert ranked == ["illegal", "harassment", "spam", "inappropriate", "off_topic", "other"]
    totals = [report_weight(Standing(), 0, 0, r, DEFAULT_SETTINGS).total for r in ranked]
    assert totals == sorted(totals, reverse=True)


@pytest.mark.parametrize(
    ("score", "band"),
    [(0, "low"), (4999, "low"), (5000, "medium"), (11999, "medium"), (12000, "high")],
)
def test_priority_bands(score: int, band: str) -> None:
    assert priority_of(score, DEFAULT_SETTINGS) == band


def test_dismiss_and_keep_reject_every_other_decision_approves() -> None:
    assert {d: outcome_of(d) for d in ("dismiss", "keep")} == {
        "dismiss": "rejected",
        "keep": "rejected",
    }
    for decision in ("hide", "remove", "warn", "suspend", "ban"):
        assert outcome_of(decision) == "approved"


def test_periods_and_durations_use_event_time_only() -> None:
    assert period_of(datetime(1970, 1, 1, tzinfo=UTC), 30) == 0
    assert period_of(datetime(1970, 1, 31, tzinfo=UTC), 30) == 1
    assert period_of(datetime(1969, 12, 31, 23, tzinfo=UTC), 30) == -1
    assert period_of(datetime(1, 1, 1, tzinfo=UTC), 30) < period_of(
        datetime(9999, 12, 31, tzinfo=UTC), 30
    )
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert seconds_between(start, start + timedelta(hours=2, microseconds=5)) == 7200
    assert seconds_between(start, start - timedelta(hours=1)) == 0  # a skewed clock


# -- settings and version --------------------------------------------------------------------------

CHANGES: dict[str, object] = {
    "base_weight": 2000,
    "standing_weight": 500,
    "staff_standing": 6,
    "trust_levels": (TrustLevel(1, 2, 2),),
    "sanction_penalty": 2,
    "reason_bonus": tuple((r, 0) for r in REPORT_REASONS),
    "accuracy_min_flags": 10,
    "accuracy_axis": Fraction(3, 4),
    "accuracy_max_bonus": 4000,
    "decay_period_days": 7,
    "decay_retention": Fraction(1),
    "decay_window_periods": 12,
    "cooldown_hours": 48,
    "medium_priority": 4000,
    "high_priority": 13000,
    "auto_hide_score": 20000,
}


def test_every_fold_setting_changes_the_version_and_the_sla_does_not() -> None:
    fields = {f.name for f in dataclasses.fields(ModerationSettings)}
    assert fields == {*CHANGES, "sla_hours"}, "list the new setting in CHANGES"
    base = version_of(DEFAULT_SETTINGS)
    assert ModerationQueue.version == base
    for name, value in CHANGES.items():
        changed = replace(DEFAULT_SETTINGS, **{name: value})
        assert version_of(changed) != base, name
    assert version_of(replace(DEFAULT_SETTINGS, sla_hours=4)) == base
    assert 3_000_000 <= base < 4_000_000  # revision 3, fits the engine's Integer column


def test_a_configured_projection_carries_its_settings_and_version() -> None:
    strict = replace(DEFAULT_SETTINGS, auto_hide_score=8000)
    cls = ModerationQueue.configured(strict)
    assert issubclass(cls, ModerationQueue)
    assert (cls.settings, cls.version, cls.name) == (strict, version_of(strict), "moderation")
    assert fingerprint(strict) != fingerprint(DEFAULT_SETTINGS)
    assert ModerationQueue.configured(strict) is cls
    assert ModerationQueue.configured(DEFAULT_SETTINGS) is ModerationQueue


def test_a_subclass_cannot_change_the_settings_without_the_version() -> None:
    with pytest.raises(TypeError, match="configured"):

        class Sneaky(ModerationQueue):
            settings = replace(DEFAULT_SETTINGS, cooldown_hours=1)


@pytest.mark.parametrize(
    "change",
    [
        {"reason_bonus": (("spam", 1),)},
        {"trust_levels": (TrustLevel(2, 1, 1), TrustLevel(1, 2, 2))},
        {"trust_levels": (TrustLevel(1, 10, 1), TrustLevel(2, 5, 1))},
        {"accuracy_axis": Fraction(1)},
        {"decay_retention": Fraction(0)},
        {"decay_window_periods": 0},
        {"cooldown_hours": -1},
        {"medium_priority": 9000, "high_priority": 8000},
    ],
)
def test_invalid_settings_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="invalid moderation settings"):
        replace(DEFAULT_SETTINGS, **change)
