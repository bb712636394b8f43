"""Edge helpers of the projection commands: the database, workers, status with lag.

This is where the CLI meets the projection engine: it opens the database from the settings,
runs a :class:`~projections.supervisor.Supervisor` until stopped and reads projection status
with the stream's head. The generation lifecycle (building, swapping, resuming, dropping) is
:mod:`projections.lifecycle`'s; the CLI calls it directly. Driver and engine errors (nats-py,
SQLAlchemy, :class:`~projections.errors.ProjectionError`) are translated here into one-line
:class:`EngineError` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from agora.config import Settings, env_name
from agora.errors import AgoraError, ConfigError
from agora.registry import get_projections
from agora.stack import Stack
from projections.database import create_engine
from projections.errors import ProjectionError
from projections.infra import GenerationState
from projections.lease import expired_leases
from projections.status import (
    PartitionStatus,
    StatusRow,
    read_status,
    with_lag,
)

# The engine's worker modules load only where used, so that `agora status` does not import them.
if TYPE_CHECKING:
    from projections.runner import WorkerSettings
    from projections.store import ProjectionStore
    from projections.supervisor import Supervisor

log = structlog.get_logger("agora.workers")

#: Seconds between two progress log lines of `agora worker`, per projection.
LOG_EVERY = 5.0


class EngineError(AgoraError):
    """The projection engine, its database or NATS failed; the message is one line."""


# -- errors ------------------------------------------------------------------------------------


def one_line(error: BaseException) -> str:
    """The first line of an error's message (SQLAlchemy appends SQL and links on more)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return first or type(error).__name__


@contextlib.contextmanager
def translate(what: str | None = None) -> Iterator[None]:
    """Turn engine, SQLAlchemy and nats-py errors raised inside into :class:`EngineError`."""
    prefix = f"{what}: " if what else ""
    try:
        yield
    except AgoraError:
        raise
    except ProjectionError as error:
        raise EngineError(prefix + one_line(error)) from error
    except sa.exc.SQLAlchemyError as error:
        raise EngineError(f"{prefix}database error: {one_line(error)}") from error
    except (nats.errors.Error, TimeoutError) as error:
        raise EngineError(f"{prefix}NATS error: {one_line(error)}") from error


# -- the database ------------------------------------------------------------------------------


def open_engine(settings: Settings) -> Engine:
    """The projection database of ``settings`` (SQLite in ``data_dir`` unless a URL is set)."""
    url = settings.effective_database_url
    try:
        engine = create_engine(url)
    except ProjectionError as error:  # a malformed or unsupported URL
        masked = str(settings.masked()["database_url (effective)"])
        reason = one_line(error).replace(repr(url), repr(masked)).replace(url, masked)
        raise ConfigError(f"{env_name('database_url')}: {reason}") from None
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise EngineError(f"cannot create the folder of {database}: {error}") from None
    return engine


def store_of(engine: Engine, name: str) -> ProjectionStore:
    """A store of the registered projection ``name`` (UnknownProjection if there is none)."""
    from projections.store import ProjectionStore

    return ProjectionStore(engine, get_projections([name])[0])


# -- running workers ---------------------------------------------------------------------------


def _metrics_server(port: int, addr: str) -> Any:
    try:
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr)
    except OSError as error:
        raise EngineError(
            f"cannot serve metrics on {addr}:{port}: {error.strerror or error}"
        ) from None
    log.info("serving metrics", url=f"http://{addr}:{port}/metrics")
    return server


async def run_workers(
    stack: Stack,
    names: Sequence[str] | None,
    partitions: int = 1,
    only_partitions: Sequence[int] | None = None,
    metrics_port: int | None = None,
    stop: asyncio.Event | None = None,
    *,
    metrics_addr: str = "127.0.0.1",
    settings: WorkerSettings | None = None,
    log_every: float = LOG_EVERY,
    engine: Engine | None = None,
) -> None:
    """Run a supervisor for the projections ``names`` (all when empty) until ``stop`` is set.

    ``partitions`` is the partition count of generations this process creates (the first one,
    and rebuilds after a projection's version changes); existing generations keep theirs.
    ``only_partitions`` limits the live partitions this process runs. Logs one progress line per
    projection every ``log_every`` seconds.
    """
    from projections.supervisor import Supervisor

    stop = stop or asyncio.Event()
    projections = get_projections(list(names) if names else None)
    await stack.stream_status()  # the stream must exist: fail clearly instead of retrying
    own_engine = engine is None
    db = engine if engine is not None else open_engine(stack.settings)
    metrics = _metrics_server(metrics_port, metrics_addr) if metrics_port is not None else None
    supervisor = Supervisor(
        stack.js,
        db,
        projections,
        partitions=partitions,
        only_partitions=only_partitions,
        settings=settings,
    )
    log.info(
        "worker started",
        projections=[p.name for p in projections],
        partitions=partitions,
        only_partitions=list(only_partitions) if only_partitions is not None else None,
    )
    reporter = asyncio.create_task(_report(supervisor, stop, log_every))
    try:
        with translate():
            await supervisor.run(stop)
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        if own_engine:
            db.dispose()
        log.info("worker stopped")


async def _report(supervisor: Supervisor, stop: asyncio.Event, every: float) -> None:
    """Log one line per projection every ``every`` seconds: state, checkpoint, events/s."""
    last: dict[tuple[str, int, int], int] = {}
    last_time = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        now = time.monotonic()
        elapsed = max(now - last_time, 1e-6)
        last_time = now
        for name, store in supervisor.stores.items():
            live = [(k, w) for k, (w, _) in list(supervisor.workers.items()) if k[0] == name]
            handled = 0
            for key, worker in live:
                handled += worker.progress.events - last.get(key, 0)
                last[key] = worker.progress.events
            try:
                rows = await asyncio.to_thread(store.generations)
            except (ProjectionError, sa.exc.SQLAlchemyError) as error:
                log.warning("cannot read generations", projection=name, error=one_line(error))
                continue
            active = next((r for r in rows if r.state is GenerationState.ACTIVE), None)
            building = [
                {"generation": r.generation, "checkpoint": min(r.checkpoints, default=0)}
                for r in rows
                if r.state is GenerationState.BUILDING
            ]
            states = sorted({str(w.state) for _, w in live}) or ["none"]
            log.info(
                "projection progress",
                projection=name,
                generation=active.generation if active else None,
                checkpoint=min(active.checkpoints, default=0) if active else None,
                events_per_s=round(max(handled, 0) / elapsed, 1),
                workers=",".join(states),
                building=building or None,
            )


# -- status ------------------------------------------------------------------------------------


def read_partitions(engine: Engine, projection: str | None = None) -> list[PartitionStatus]:
    """Every partition of every non-dropped generation, from the database."""
    with translate("cannot read projection status"):
        return read_status(engine, projection)


async def projection_status(
    settings: Settings, engine: Engine, projection: str | None = None
) -> tuple[int | None, list[StatusRow], str | None]:
    """Status rows with lag; when NATS cannot be reached, rows without lag and the reason."""
    partitions = await asyncio.to_thread(read_partitions, engine, projection)
    with translate("cannot read writer leases"):
        expired = await asyncio.to_thread(expired_leases, engine)
    try:
        async with Stack(settings, name="agora-status") as stack:
            with translate():
                head, rows = await with_lag(stack.js, partitions, expired=expired)
    except AgoraError as error:
        _, rows = await with_lag(None, partitions, expired=expired)
        return None, rows, str(error)
    return head, rows, None
