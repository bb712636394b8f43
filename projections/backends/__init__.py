"""Database backends: one class per supported database, behind :class:`Backend`.

:func:`backend_for` picks the one an engine needs; nothing else in ``projections`` asks which
database it talks to.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from projections.backends.base import Backend
from projections.backends.postgresql import PostgreSQLBackend
from projections.backends.sqlite import SQLiteBackend
from projections.errors import DatabaseError

BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (SQLiteBackend, PostgreSQLBackend)}
"""Each supported database's backend, by SQLAlchemy dialect name."""


def backend_type(dialect: str) -> type[Backend]:
    """The backend class of a dialect name (``sqlite``, ``postgresql``)."""
    try:
        return BACKENDS[dialect]
    except KeyError:
        raise DatabaseError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL") from None


def backend_for(engine: Engine, copy_min_rows: int = 200) -> Backend:
    """A new backend for ``engine``'s database (one per store: it caches compiled statements)."""
    return backend_type(engine.dialect.name)(copy_min_rows)


__all__ = [
    "BACKENDS",
    "Backend",
    "PostgreSQLBackend",
    "SQLiteBackend",
    "backend_for",
    "backend_type",
]
