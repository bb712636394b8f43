"""Engagement and community health: daily activity, responsiveness, retention, crisis signal.

:class:`Engagement` is the projection (fold and tables, :mod:`.projection` and :mod:`.tables`),
:mod:`.days` the per-member day bitset, :mod:`.settings` the constants and query defaults, and
:mod:`.queries` the dashboard's read-only queries. See docs/metrics.md.
"""

from projections.engagement.projection import Engagement
from projections.engagement.settings import DEFAULTS, QueryDefaults
from projections.engagement.tables import STABLE, TABLES, EngagementTables

__all__ = ["DEFAULTS", "STABLE", "TABLES", "Engagement", "EngagementTables", "QueryDefaults"]
