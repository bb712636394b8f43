"""Writer leases: a partition's owner must show it is alive, or a standby takes the partition.

The writer lock (:mod:`projections.locks`) dies with its process, but a frozen process (SIGSTOP,
a stuck VM) keeps its session and so its lock forever. So ownership also has a lease: a row per
(projection, generation, partition) holding an epoch ``token``, the owner's session name and an
expiry by the database's clock, which the owner renews every status interval. The lock is taken
per epoch. Once a lease has expired, a standby -- on PostgreSQL after ending the stale owner's
sessions (``pg_terminate_backend``), so that a transaction it left open releases its row locks --
moves the token on (one conditional UPDATE: only one standby wins) and takes the new epoch's
lock. The stale
owner, when it runs again, cannot renew (the token moved on): it gives the partition up and waits.
A batch it might still commit is refused by the checkpoint fence (``projections.store.Fenced``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from projections.backends import backend_type
from projections.database import reader, session_name
from projections.infra import leases

log = structlog.get_logger("agora.projections")

LEASE_SECONDS = 15.0
"""Default lease: a partition whose owner has not renewed it for this long is taken over."""


class Lease:
    """The lease of one partition, as seen by one process (owner or standby)."""

    def __init__(
        self, engine: Engine, projection: str, generation: int, partition: int, seconds: float
    ) -> None:
        self.engine = engine
        self.seconds = seconds
        self.owner = session_name()
        self._now = backend_type(engine.dialect.name).clock_seconds()
        self._key = (
            (leases.c.projection == projection)
            & (leases.c.generation == generation)
            & (leases.c.partition == partition)
        )
        self._row = {"projection": projection, "generation": generation, "partition": partition}

    def current(self) -> tuple[int, bool, str]:
        """The lease's token, whether it has expired (a new lease starts expired), its owner."""
        with reader(self.engine).connect() as conn:
            row = self._read(conn)
        if row is None:
            with self.engine.begin() as conn:
                leases.create(conn, checkfirst=True)
                try:
                    with conn.begin_nested():
                        conn.execute(
                            leases.insert().values(**self._row, token=0, owner="", expires=0.0)
                        )
                except sa.exc.IntegrityError:
                    pass  # another worker created it meanwhile
                row = self._read(conn)
                assert row is not None
        return int(row.token), bool(row.expired), str(row.owner)

    def _read(self, conn: Connection) -> Any:
        if not sa.inspect(conn).has_table(leases.name):
            return None
        return conn.execute(
            sa.select(
                leases.c.token, leases.c.owner, (leases.c.expires < self._now).label("expired")
            ).where(self._key)
        ).first()

    def claim(self, token: int) -> bool:
        """Take the lease of epoch ``token`` (its lock is ours); False if the epoch moved on."""
        return self._update(leases.c.token == token, owner=self.owner)

    def renew(self, token: int) -> bool:
        """Extend our lease; False if it is no longer ours (a standby took the partition)."""
        return self._update((leases.c.token == token) & (leases.c.owner == self.owner))

    def take_over(self, token: int) -> bool:
        """Move an expired lease of epoch ``token`` on to ours; False if another standby did."""
        with self.engine.begin() as conn:
            moved = conn.execute(
                leases.update()
                .where(self._key & (leases.c.token == token) & (leases.c.expires < self._now))
                .values(token=token + 1, owner=self.owner, expires=self._now + self.seconds)
            ).rowcount
        return moved == 1

    def _update(self, condition: Any, **values: Any) -> bool:
        with self.engine.begin() as conn:
            updated = conn.execute(
                leases.update()
                .where(self._key & condition)
                .values(expires=self._now + self.seconds, **values)
            ).rowcount
        return updated == 1

    def end_sessions(self, stale: str) -> None:
        """On PostgreSQL, terminate the stale owner's sessions (its locks and open transactions).

        Done before the take-over: a session frozen in the middle of a transaction may hold the
        very rows (the lease, the checkpoint) the take-over and the next batch must lock.

        Needs the same database role as the workers (or ``pg_signal_backend``); without it, the
        take-over still happens, but a transaction the stale owner left open keeps its locks.
        """
        if not stale or stale == self.owner:
            return
        try:
            with self.engine.begin() as conn:
                ended = backend_type(conn.dialect.name).end_sessions(conn, stale)
        except sa.exc.SQLAlchemyError as error:
            log.warning("cannot end the stale owner's sessions", owner=stale, error=str(error))
            return
        if ended is not None:
            log.warning("stale owner's sessions ended", owner=stale, sessions=ended)


def expired_leases(engine: Engine) -> set[tuple[str, int, int]]:
    """(projection, generation, partition) of every lease that has expired, by the DB's clock."""
    with reader(engine).connect() as conn:
        if not sa.inspect(conn).has_table(leases.name):
            return set()
        rows = conn.execute(
            sa.select(leases.c.projection, leases.c.generation, leases.c.partition).where(
                leases.c.expires < backend_type(engine.dialect.name).clock_seconds()
            )
        ).all()
    return {(r.projection, int(r.generation), int(r.partition)) for r in rows}
