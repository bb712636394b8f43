"""Runs projections: the active generation live, a building generation until it can be swapped in.

A supervisor owns no partition: each of its workers first takes the partition's writer lock, so
any number of supervisor processes can run side by side; a partition whose owner dies is taken
over by a waiting worker. When the code's projection version differs from the active generation's,
the supervisor builds a new generation by replay beside the active one (which keeps serving) and
swaps it in atomically once it has caught up -- rebuilds need no downtime.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence

import sqlalchemy as sa
import structlog
from nats.js import JetStreamContext
from sqlalchemy.engine import Engine

from projections.api import Projection
from projections.errors import DatabaseError, ProjectionError
from projections.lifecycle import (
    BuildOutcome,
    GenerationState,
    bootstrap,
    build,
    start_generation,
)
from projections.runner import Progress, Worker, WorkerSettings
from projections.store import ProjectionStore

log = structlog.get_logger("agora.projections")


class Supervisor:
    """Keeps the right workers running for a set of projections in this process."""

    def __init__(
        self,
        js: JetStreamContext,
        engine: Engine,
        projections: Sequence[Projection],
        *,
        partitions: int = 1,
        only_partitions: Sequence[int] | None = None,
        settings: WorkerSettings | None = None,
        poll: float = 1.0,
        on_batch: Callable[[str, Progress], None] | None = None,
    ) -> None:
        self.js = js
        self.engine = engine
        self.stores = {p.name: ProjectionStore(engine, p) for p in projections}
        _check_distinct(self.stores.values(), len(projections))
        self.partitions = partitions
        self.only_partitions = set(only_partitions) if only_partitions is not None else None
        self.settings = settings or WorkerSettings()
        self.poll = poll
        self.on_batch = on_batch
        self.workers: dict[tuple[str, int, int], tuple[Worker, asyncio.Task[None]]] = {}
        self._builds: dict[tuple[str, int], asyncio.Task[BuildOutcome]] = {}

    def _wanted(self) -> set[tuple[str, int, int]]:
        wanted: set[tuple[str, int, int]] = set()
        for name, store in self.stores.items():
            rows = store.generations()
            version = store.projection.version
            active = next((r for r in rows if r.state is GenerationState.ACTIVE), None)
            if active is not None and active.version == version:
                for p in range(active.partitions):
                    if self.only_partitions is None or p in self.only_partitions:
                        wanted.add((name, active.generation, p))
            elif (
                active is not None
                and active.version < version
                and not any(
                    r.state is GenerationState.BUILDING and r.version == version for r in rows
                )
            ):
                number = start_generation(store, self.partitions)
                log.info(
                    "code version is newer than the active generation: rebuilding",
                    projection=name,
                    active_version=active.version,
                    version=version,
                    generation=number,
                )
            elif active is not None and active.version > version:
                # Older code (a rolling deploy, a stale process): it must neither fold the newer
                # generation with old code nor rebuild its own version over it -- two versions
                # running side by side would otherwise swap rebuilds back and forth forever.
                log.warning(
                    "code version is older than the active generation: not running",
                    projection=name,
                    active_version=active.version,
                    version=version,
                )
        return wanted

    def _building(self) -> list[tuple[str, int]]:
        out = []
        for name, store in self.stores.items():
            for row in store.generations():
                if (
                    row.state is GenerationState.BUILDING
                    and row.version == store.projection.version
                ):
                    out.append((name, row.generation))
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, re-checking generations every ``poll`` seconds."""
        for store in self.stores.values():
            await asyncio.to_thread(bootstrap, store, self.partitions)
        try:
            while not stop.is_set():
                try:
                    wanted = await asyncio.to_thread(self._wanted)
                    building = await asyncio.to_thread(self._building)
                except (DatabaseError, sa.exc.SQLAlchemyError) as error:
                    log.warning("cannot read generations", error=str(error))
                    wanted, building = set(self.workers), []
                self._reconcile(wanted, stop)
                self._reap_builds()
                for key in building:
                    if key not in self._builds:
                        self._builds[key] = asyncio.create_task(
                            build(
                                self.js,
                                self.stores[key[0]],
                                key[1],
                                settings=self.settings,
                                stop=stop,
                                wait_when_stuck=True,
                            ),
                            name=f"build {key[0]} g{key[1]}",
                        )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)
        finally:
            for _, running in self.workers.values():
                running.cancel()
            for pending_build in self._builds.values():
                pending_build.cancel()
            await asyncio.gather(
                *(t for _, t in self.workers.values()),
                *self._builds.values(),
                return_exceptions=True,
            )

    def _reap_builds(self) -> None:
        """Forget ended builds; log a failed one (a generation still building is built again)."""
        for key, task in list(self._builds.items()):
            if not task.done():
                continue
            del self._builds[key]
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                log.error(
                    "build failed; trying again",
                    projection=key[0],
                    generation=key[1],
                    error=str(error),
                    error_type=type(error).__name__,
                )

    def _batch_callback(self, name: str) -> Callable[[Progress], None] | None:
        callback = self.on_batch
        if callback is None:
            return None

        def report(progress: Progress) -> None:
            callback(name, progress)

        return report

    def _reconcile(self, wanted: set[tuple[str, int, int]], stop: asyncio.Event) -> None:
        for key in list(self.workers):
            worker, task = self.workers[key]
            if key not in wanted or task.done():
                if not task.done():
                    task.cancel()
                elif not task.cancelled() and task.exception() is not None:
                    log.error("worker failed", projection=key[0], error=str(task.exception()))
                del self.workers[key]
        for key in wanted - set(self.workers):
            name, generation, partition = key
            store = self.stores[name]
            rows = {r.generation: r for r in store.generations()}
            worker = Worker(
                self.js,
                store,
                generation=generation,
                partition=partition,
                partitions=rows[generation].partitions,
                settings=self.settings,
                on_batch=self._batch_callback(name),
            )
            self.workers[key] = (worker, asyncio.create_task(worker.run(stop)))


def _check_distinct(stores: Iterable[ProjectionStore], count: int) -> None:
    """Refuse projections that would share a name or a table (their stable view names)."""
    names: dict[str, str] = {}
    seen = 0
    for store in stores:
        seen += 1
        for logical in store.generation(1).tables:
            other = names.setdefault(logical, store.projection.name)
            if other != store.projection.name:
                raise ProjectionError(
                    f"projections {other} and {store.projection.name} both define table {logical}"
                )
    if seen != count:
        raise ProjectionError("two projections have the same name")
