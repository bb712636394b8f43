"""The engine's reference projection: events per community, type and day (UTC, event time).

Small enough to read in a minute and to benchmark the engine with; every other projection follows
the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa

from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes


class EventCounts(Projection):
    """Counts events per community, event type and UTC day of ``occurred_at``."""

    name = "event_counts"
    version = 1

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        """One table, ``event_counts``: (community, type, day) -> events, first and last seq."""
        table = sa.Table(
            table_name("event_counts"),
            metadata,
            sa.Column("community", sa.String(64), primary_key=True, comment="community id"),
            sa.Column("type", sa.String(64), primary_key=True, comment="event type (post.created)"),
            sa.Column("day", sa.Date, primary_key=True, comment="UTC day of occurred_at"),
            sa.Column(
                "events",
                sa.BigInteger,
                nullable=False,
                default=0,
                comment="events that day (count)",
            ),
            sa.Column("first_seq", sa.BigInteger, comment="first stream sequence counted"),
            sa.Column("last_seq", sa.BigInteger, comment="last stream sequence counted"),
        )
        return {"event_counts": table}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        """Add one per event to its (community, type, day) row."""
        # Collapse the batch first: one change per row instead of three per event.
        rows: dict[tuple[str, str, date], list[int]] = {}
        for delivered in batch:
            event = delivered.event
            key = (event.community, event.TYPE, event.occurred_at.date())
            row = rows.get(key)
            if row is None:
                rows[key] = [1, delivered.seq, delivered.seq]
            else:
                row[0] += 1
                row[2] = delivered.seq
        for key, (events, first, last) in rows.items():
            changes.add("event_counts", key, events=events)
            changes.least("event_counts", key, first_seq=first)
            changes.greatest("event_counts", key, last_seq=last)
