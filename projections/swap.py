"""Bounded waits for a swap: a lock timeout per attempt, and retries with backoff.

Pointing a stable name at another generation replaces a view, which on PostgreSQL needs an
exclusive lock on it; an open read transaction on the view (a dashboard client in REPEATABLE
READ) holds that off for as long as it stays open, and every new reader queues behind the
waiting swap. So a swap waits at most ``lock_timeout`` per attempt (PostgreSQL's
``SET LOCAL lock_timeout``), rolls back, lets the readers through for a moment and tries again,
``attempts`` times; then it gives up with :class:`SwapBlocked` (a build tries again on its next
round). On SQLite (WAL) readers never hold off a swap: it commits and they keep their snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.errors import ProjectionError

SWAP_LOCK_TIMEOUT = 2.0
"""Default seconds one swap attempt waits for a lock (a reader of a stable name) before retrying."""
SWAP_ATTEMPTS = 5
"""Default attempts of one swap before it gives up with :class:`SwapBlocked`."""
_LOCK_NOT_AVAILABLE = "55P03"


class SwapBlocked(ProjectionError):
    """A swap gave up: readers of the stable names held their lock through every attempt."""


def limit_lock_wait(conn: Connection, seconds: float) -> None:
    """Make the transaction of ``conn`` fail rather than wait more than ``seconds`` for a lock."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, round(seconds * 1000))}")


def is_lock_timeout(error: BaseException) -> bool:
    """Whether ``error`` is a statement that gave up waiting for a lock (see above)."""
    orig = getattr(error, "orig", None)
    return isinstance(error, sa.exc.OperationalError) and (
        getattr(orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE
    )


def retry_on_lock_timeout(
    attempt: Callable[[], None], *, lock_timeout: float, attempts: int, what: str
) -> None:
    """Run ``attempt`` until it does not time out on a lock, at most ``attempts`` times.

    Between attempts it backs off (0.1 s, doubling, at most ``lock_timeout``): the readers that
    queued behind the swap's lock request get through meanwhile.
    """
    pause = 0.1
    for number in range(1, attempts + 1):
        try:
            attempt()
            return
        except sa.exc.OperationalError as error:
            if not is_lock_timeout(error):
                raise
            if number == attempts:
                raise SwapBlocked(
                    f"{what}: readers of the stable names held their lock through {attempts} "
                    f"attempts of {lock_timeout} s; retry, or end long read transactions"
                ) from error
        time.sleep(pause)
        pause = min(pause * 2, lock_timeout)
