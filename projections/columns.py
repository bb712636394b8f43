"""Column types shared by the projections' and the engine's tables."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A point in time, in UTC: ``timestamptz`` on PostgreSQL, the UTC wall time on SQLite.

    The same DDL and the same stored values as ``DateTime(timezone=True)`` given aware UTC
    datetimes (SQLite keeps ``YYYY-MM-DD HH:MM:SS.ffffff`` text and drops the zone, so another
    zone's wall time would be stored as if it were UTC: values are converted to UTC first). Read
    back, every value is an aware datetime in UTC on both databases (SQLite hands back naive
    ones, PostgreSQL ones in the session's zone). A naive datetime is refused: its zone is
    unknown, and the value stored would depend on a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        """Values are :class:`datetime.datetime`."""
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """``value`` in UTC; ValueError if it is naive."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given for a UTC column")
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """The stored moment as an aware datetime in UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value if value.tzinfo is UTC else value.astimezone(UTC)
