"""A member's active days as a bitset: the compact per-member activity record of the fold.

Bit ``i`` of the integer stands for the day ``base + i`` (``base`` is the member's earliest
active day), so one row per member holds every active day, and the fold answers "was the member
active on another day of this window?" from that row alone. Stored as lower-case hex text
(``hex_of``/``from_hex``), the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta


def from_hex(text: str | None) -> int:
    """The bitset stored as ``text`` (empty or None: no day)."""
    return int(text, 16) if text else 0


def hex_of(bits: int) -> str:
    """The text stored for ``bits``."""
    return format(bits, "x")


def rebase(bits: int, base: date, new_base: date) -> int:
    """``bits`` relative to ``new_base`` instead of ``base`` (``new_base`` must not be later)."""
    return bits << (base - new_base).days


def has_any(bits: int, base: date, first: date, last: date) -> bool:
    """Whether any day in ``first..last`` (inclusive) is set."""
    lo = max((first - base).days, 0)
    hi = (last - base).days
    if hi < lo:
        return False
    width = hi - lo + 1
    return bool((bits >> lo) & ((1 << width) - 1))


def previous_day(bits: int, base: date, day: date) -> date | None:
    """The latest set day before ``day``, if any."""
    i = (day - base).days
    if i <= 0:
        return None
    below = bits & ((1 << i) - 1)
    return None if not below else base + timedelta(days=below.bit_length() - 1)


def next_day(bits: int, base: date, day: date) -> date | None:
    """The earliest set day after ``day``, if any."""
    i = (day - base).days
    if i < 0:
        return None if not bits else base + timedelta(days=(bits & -bits).bit_length() - 1)
    above = bits >> (i + 1)
    if not above:
        return None
    return base + timedelta(days=i + 1 + (above & -above).bit_length() - 1)


def days_of(bits: int, base: date | None) -> list[date]:
    """Every set day, in order."""
    if base is None:
        return []
    out: list[date] = []
    i = 0
    while bits:
        if bits & 1:
            out.append(base + timedelta(days=i))
        bits >>= 1
        i += 1
    return out
