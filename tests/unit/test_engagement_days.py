"""The day bitset of projections.engagement.days against plain sets of days."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.engagement import days

D0 = date(2026, 1, 1)


def build(offsets: list[int]) -> tuple[int, date | None]:
    """Set days in the given order, rebasing as the fold does."""
    bits, base = 0, None
    for offset in offsets:
        day = D0 + timedelta(days=offset)
        if base is None:
            base = day
        elif day < base:
            bits, base = days.rebase(bits, base, day), day
        bits |= 1 << (day - base).days
    return bits, base


@settings(max_examples=200)
@given(st.lists(st.integers(0, 200), max_size=30), st.integers(-5, 210), st.integers(0, 40))
def test_bitset_answers_like_a_set(offsets: list[int], probe: int, width: int) -> None:
    bits, base = build(offsets)
    wanted = sorted({D0 + timedelta(days=o) for o in offsets})
    assert days.days_of(bits, base) == wanted
    assert days.days_of(days.from_hex(days.hex_of(bits)), base) == wanted
    if base is None:
        return
    day = D0 + timedelta(days=probe)
    earlier = [d for d in wanted if d < day]
    later = [d for d in wanted if d > day]
    assert days.previous_day(bits, base, day) == (earlier[-1] if earlier else None)
    assert days.next_day(bits, base, day) == (later[0] if later else None)
    last = day + timedelta(days=width)
    assert days.has_any(bits, base, day, last) == any(day <= d <= last for d in wanted)


def test_base_is_the_earliest_day_whatever_the_order() -> None:
    assert build([5, 3, 9]) == build([3, 9, 5]) == (0b1000101, D0 + timedelta(days=3))
    assert days.hex_of(0) == "0" and days.from_hex("") == 0 and days.from_hex(None) == 0
