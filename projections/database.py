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

from projections.backends import BACKENDS, backend_type
from projections.backends.sqlite import BEGIN_OPTION
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
    elif parsed.get_backend_name() not in BACKENDS:
        raise DatabaseError(f"unsupported database {parsed.drivername!r}: use SQLite or PostgreSQL")
    return parsed


def session_name() -> str:
    """This process's PostgreSQL ``application_name``: pid first, as it is cut at 63 bytes."""
    return f"agora {os.getpid()}@{socket.gethostname()}"[:63]


def create_engine(url: str, **kwargs: Any) -> Engine:
    """Create a SQLAlchemy engine for ``url`` with Agora's per-database settings (its backend's).

    PostgreSQL sessions are named after the process (:func:`session_name`, unless the URL names
    them): a standby taking over a frozen owner's partitions ends that owner's sessions by it.
    """
    parsed = normalise_url(url)
    name = parsed.get_backend_name()
    if name == "postgresql" and "application_name" not in parsed.query:
        connect_args = {"application_name": session_name(), **kwargs.pop("connect_args", {})}
        kwargs["connect_args"] = connect_args
    return backend_type(name).create_engine(parsed, **kwargs)


def reader(engine: Engine) -> Engine:
    """The same engine (and pool) for read-only work.

    On SQLite every transaction of :func:`create_engine`'s engines begins IMMEDIATE, taking the
    write lock, so a reader would queue behind a busy writer (and could wait up to the busy
    timeout). Transactions of this engine begin DEFERRED: in WAL mode a reader then reads its
    snapshot without waiting. They must not write. PostgreSQL ignores the option.
    """
    return engine.execution_options(**{BEGIN_OPTION: "DEFERRED"})


def check_connection(engine: Engine) -> str:
    """Open a connection and return the server's version string; raise DatabaseError if not."""
    try:
        with engine.connect() as conn:
            return backend_type(engine.dialect.name).server_version(conn)
    except sa.exc.SQLAlchemyError as error:
        raise DatabaseError(
            f"cannot connect to {engine.url.render_as_string()}: {error}"
        ) from error
