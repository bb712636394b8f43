"""Database engines for projections: SQLite by default, PostgreSQL through psycopg 3.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a process crash never loses a committed
transaction, and a power loss can only lose the last transactions *together with* their
checkpoints, so replay restores them -- exactly-once holds either way.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from projections.errors import DatabaseError

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg"}


def normalise_url(url: str) -> sa.URL:
    """Parse ``url``; plain ``postgresql://`` URLs are routed to the psycopg 3 driver."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as error:
        raise DatabaseError(f"not a database URL: {url!r}") from error
    if parsed.drivername in _POSTGRES_SCHEMES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(f"unsupported database {parsed.drivername!r}: use SQLite or PostgreSQL")
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (below); pysqlite's own transaction handling must be off.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # 64 MiB of page cache (default 2 MiB): a catch-up batch touches more pages than that.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_BEGIN = "sqlite_begin"
"""Execution option choosing how a SQLite transaction begins: IMMEDIATE (default) or DEFERRED."""


def _sqlite_begin(conn: Any) -> None:
    # Take the write lock at BEGIN: a transaction that reads the checkpoint and then writes can
    # otherwise fail to upgrade its lock when another writer got there first. Readers (see
    # reader()) begin DEFERRED: in WAL mode they then never wait for a writer.
    mode = conn.get_execution_options().get(_BEGIN, "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {'DEFERRED' if mode == 'DEFERRED' else 'IMMEDIATE'}")


def session_name() -> str:
    """This process's PostgreSQL ``application_name``: pid first, as it is cut at 63 bytes."""
    return f"agora {os.getpid()}@{socket.gethostname()}"[:63]


def create_engine(url: str, **kwargs: Any) -> Engine:
    """Create a SQLAlchemy engine for ``url`` with Agora's per-dialect settings.

    PostgreSQL sessions are named after the process (:func:`session_name`, unless the URL names
    them): a standby taking over a frozen owner's partitions ends that owner's sessions by it.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if "application_name" not in parsed.query:
        connect_args = {"application_name": session_name(), **kwargs.pop("connect_args", {})}
        kwargs["connect_args"] = connect_args
    return sa.create_engine(parsed, pool_pre_ping=True, **kwargs)


def reader(engine: Engine) -> Engine:
    """The same engine (and pool) for read-only work.

    On SQLite every transaction of :func:`create_engine`'s engines begins IMMEDIATE, taking the
    write lock, so a reader would queue behind a busy writer (and could wait up to the busy
    timeout). Transactions of this engine begin DEFERRED: in WAL mode a reader then reads its
    snapshot without waiting. They must not write. PostgreSQL ignores the option.
    """
    return engine.execution_options(**{_BEGIN: "DEFERRED"})


def check_connection(engine: Engine) -> str:
    """Open a connection and return the server's version string; raise DatabaseError if not."""
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                return "SQLite " + str(conn.execute(sa.text("select sqlite_version()")).scalar())
            return str(conn.execute(sa.text("select version()")).scalar())
    except sa.exc.SQLAlchemyError as error:
        raise DatabaseError(
            f"cannot connect to {engine.url.render_as_string()}: {error}"
        ) from error
