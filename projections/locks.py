"""Exactly one writer per (projection, generation, partition), with automatic take-over.

PostgreSQL: a session-level advisory lock on a dedicated connection; the server releases it when
the holder's connection dies. SQLite: an exclusive ``flock`` on a file beside the database; the
kernel releases it when the holder's process dies. The checkpoint fence in
:mod:`projections.store` guards correctness even if a lock were ever held twice; the lock gives
liveness (one worker works, the others wait to take over).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from projections.errors import DatabaseError


def lock_key(projection: str, generation: int, partition: int) -> int:
    """A stable signed 64-bit key for the advisory lock of one partition."""
    digest = hashlib.blake2b(
        f"agora:{projection}:{generation}:{partition}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


class WriterLock:
    """A non-blocking try-lock; call :meth:`try_acquire` until it returns True, then keep it."""

    def __init__(self, engine: Engine, projection: str, generation: int, partition: int) -> None:
        self.engine = engine
        self.name = f"{projection}.g{generation}.p{partition}"
        self._key = lock_key(projection, generation, partition)
        self._conn: Connection | None = None
        self._file: IO[Any] | None = None
        self._path: Path | None = None
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if not database or database == ":memory:":
                raise DatabaseError("single-writer locks need a file-backed SQLite database")
            self._path = Path(f"{database}.locks") / f"{self.name}.lock"

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._conn is not None or self._file is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; return whether this process now holds it."""
        if self.held:
            return True
        if self._path is not None:
            return self._try_file()
        return self._try_advisory()

    def _try_file(self) -> bool:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self._path, "a+")  # noqa: SIM115 - held open as long as the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def _try_advisory(self) -> bool:
        try:
            conn = self.engine.connect()
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(self._key))).scalar()
            conn.commit()
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"cannot take writer lock {self.name}: {error}") from error
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def alive(self) -> bool:
        """Check the lock is still ours (the PostgreSQL connection may have died)."""
        if self._file is not None:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.select(1)).scalar()
            self._conn.commit()
        except sa.exc.SQLAlchemyError:
            self._discard()
            return False
        return True

    def _discard(self) -> None:
        """Throw the lock's connection away: never back into the pool with a lock it may hold."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.invalidate()
                conn.close()

    def release(self) -> None:
        """Release the lock (also released by the server or kernel if this process dies)."""
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._conn is not None:
            try:
                self._conn.execute(sa.select(sa.func.pg_advisory_unlock(self._key)))
                self._conn.commit()
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                self._discard()
            self._conn = None
