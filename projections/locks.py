"""Exactly one writer per (projection, generation, partition), with automatic take-over.

PostgreSQL: a session-level advisory lock on a dedicated connection; the server releases it when
the holder's connection dies. SQLite: an exclusive ``flock`` on a file beside the database; the
kernel releases it when the holder's process dies. The checkpoint fence in
:mod:`projections.store` guards correctness even if a lock were ever held twice; the lock gives
liveness (one worker works, the others wait to take over).

A frozen process keeps its lock, so the lock is taken per epoch of a lease
(:mod:`projections.lease`) that its owner renews: once the lease expires, a standby moves the
epoch on and takes the new epoch's lock; the stale owner finds out when it next renews.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from projections.errors import DatabaseError
from projections.lease import LEASE_SECONDS, Lease


def lock_key(projection: str, generation: int, partition: int, epoch: int = 0) -> int:
    """A stable signed 64-bit key for the advisory lock of one partition in one lease epoch."""
    suffix = f":{epoch}" if epoch else ""
    digest = hashlib.blake2b(
        f"agora:{projection}:{generation}:{partition}{suffix}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


class WriterLock:
    """A non-blocking try-lock; call :meth:`try_acquire` until it returns True, then keep it.

    While held, call :meth:`alive` at least every ``lease / 2`` seconds: it renews the lease.
    """

    def __init__(
        self,
        engine: Engine,
        projection: str,
        generation: int,
        partition: int,
        lease: float = LEASE_SECONDS,
    ) -> None:
        self.engine = engine
        self.name = f"{projection}.g{generation}.p{partition}"
        self._ids = (projection, generation, partition)
        self._lease = Lease(engine, projection, generation, partition, lease)
        self._token = 0
        self._renewed = time.monotonic()
        self._conn: Connection | None = None
        self._file: IO[Any] | None = None
        self._dir: Path | None = None
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if not database or database == ":memory:":
                raise DatabaseError("single-writer locks need a file-backed SQLite database")
            self._dir = Path(f"{database}.locks")

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._conn is not None or self._file is not None

    def overdue(self) -> bool:
        """True when the lease may have run out since it was last renewed (a freeze, a stall)."""
        return time.monotonic() - self._renewed >= self._lease.seconds / 2

    def try_acquire(self) -> bool:
        """Take the lock if it is free, or its owner's lease expired; return whether it is ours."""
        if self.held:
            return True
        try:
            token, expired, owner = self._lease.current()
            if self._try_epoch(token):
                if self._lease.claim(token):
                    self._token, self._renewed = token, time.monotonic()
                    return True
                self._unlock()  # a standby moved the epoch on meanwhile
                return False
            if not expired:
                return False
            self._lease.end_sessions(owner)
            if not self._lease.take_over(token):
                return False
        except sa.exc.SQLAlchemyError as error:
            self._unlock()
            raise DatabaseError(f"cannot take writer lock {self.name}: {error}") from error
        if self._try_epoch(token + 1):
            self._token, self._renewed = token + 1, time.monotonic()
            return True
        return False

    def _try_epoch(self, epoch: int) -> bool:
        if self._dir is not None:
            suffix = f".e{epoch}" if epoch else ""
            return self._try_file(self._dir / f"{self.name}{suffix}.lock")
        return self._try_advisory(lock_key(*self._ids, epoch))

    def _try_file(self, path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open as long as the lock
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

    def _try_advisory(self, key: int) -> bool:
        try:
            conn = self.engine.connect()
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar()
            conn.commit()
        except sa.exc.SQLAlchemyError as error:
            raise DatabaseError(f"cannot take writer lock {self.name}: {error}") from error
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def alive(self) -> bool:
        """Check the lock is still ours and renew its lease; if lost, let it go and say so.

        Lost means: the PostgreSQL connection died, or a standby took the partition over after
        the lease expired. A database that cannot be reached for the renewal is no proof of
        either: the lock is kept (the standby needs the database too).
        """
        if self._file is None:
            if self._conn is None:
                return False
            try:
                self._conn.execute(sa.select(1)).scalar()
                self._conn.commit()
            except sa.exc.SQLAlchemyError:
                self._discard()
                return False
        try:
            renewed = self._lease.renew(self._token)
        except sa.exc.SQLAlchemyError:
            return True
        if not renewed:
            self._unlock()
            return False
        self._renewed = time.monotonic()
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
        self._unlock()

    def _unlock(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._conn is not None:
            try:
                self._conn.execute(sa.select(sa.func.pg_advisory_unlock_all()))
                self._conn.commit()
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                self._discard()
            self._conn = None
