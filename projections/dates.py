"""Date arithmetic that saturates at the ends of Python's calendar instead of raising.

The event contract bounds event times to 1970..2999 (:data:`events.limits.MIN_EVENT_TIME`,
``MAX_EVENT_TIME``), far from ``date.min`` and ``date.max``; folds and dashboard queries still
shift dates with these helpers where a shift could leave the calendar, so that a wider range
(a future contract, a hand-made database) degrades to a clipped window, never to an
``OverflowError`` that pauses a projection or answers 500. Deterministic: no clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

_LOWEST = datetime.min.replace(tzinfo=UTC)
_HIGHEST = datetime.max.replace(tzinfo=UTC)


def shift_day(day: date, delta: timedelta) -> date:
    """``day + delta``, or the first or last representable day if that leaves the calendar."""
    try:
        return day + delta
    except OverflowError:
        return date.max if delta > timedelta(0) else date.min


def shift_time(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta`` (aware), clipped to the first or last representable UTC instant."""
    try:
        return moment + delta
    except OverflowError:
        return _HIGHEST if delta > timedelta(0) else _LOWEST
