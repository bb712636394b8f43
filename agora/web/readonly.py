"""Read-only database access for the dashboard: it can read the projection tables, never write.

* **SQLite** is opened read-only by SQLite itself (a ``file:...?mode=ro`` URI), with
  ``PRAGMA query_only`` on top; no journal-mode or other pragma that would write is issued. Each
  transaction begins ``DEFERRED``: in WAL mode a page's queries read one snapshot and never wait
  for a projection worker.
* **PostgreSQL** uses the read URL if one is configured (``AGORA_READ_DATABASE_URL``: a role
  with SELECT grants only, see docs/operations.md), else the main URL; either way every
  session runs with ``default_transaction_read_only=on`` and ``REPEATABLE READ``, so a page's
  queries see one snapshot and any write is refused by the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agora.config import Settings
from projections.database import normalise_url


def read_only_engine(url: str) -> Engine:
    """An engine on ``url`` (SQLite or PostgreSQL) through which nothing can be written."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_read_only(parsed)
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,
        isolation_level="REPEATABLE READ",
        connect_args={"options": "-c default_transaction_read_only=on"},
    )


def read_only_engine_for(settings: Settings) -> Engine:
    """The dashboard's engine: ``read_database_url`` if set, else the main database URL."""
    return read_only_engine(settings.read_database_url or settings.effective_database_url)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another backend)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    database = parsed.database
    if database.startswith("file:"):
        database = database[len("file:") :]
    return None if database == ":memory:" else Path(database)


def _sqlite_read_only(parsed: sa.URL) -> Engine:
    path = sqlite_path(parsed.render_as_string(hide_password=False))
    if path is None:
        raise ValueError("a read-only SQLite database needs a file")
    uri = f"sqlite+pysqlite:///file:{path.resolve()}?mode=ro&uri=true"
    engine = sa.create_engine(uri)
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (below); pysqlite's own transaction handling must be off.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN DEFERRED")
