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
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from nats.js import JetStreamContext
from sqlalchemy.engine import Engine

from projections.api import Projection
from projections.errors import DatabaseError, ProjectionError
from projections.runner import Progress, Worker, WorkerSettings
from projections.status import stream_head
from projections.store import NotBuilding, NotCaughtUp, ProjectionStore
from projections.swap import SwapBlocked

log = structlog.get_logger("agora.projections")


@dataclass(frozen=True)
class BuildProgress:
    """Where a building generation is: its slowest partition against the stream's head."""

    projection: str
    generation: int
    checkpoint: int
    head: int
    rate: float


def bootstrap(store: ProjectionStore, partitions: int) -> int:
    """Make sure the projection has an active generation; create and activate g1 if none."""
    for attempt in range(3):
        try:
            rows = store.generations()
            active = next((r for r in rows if r.state == "active"), None)
            if active is not None:
                return active.generation
            if not rows:
                store.ensure(1, partitions)
                store.activate(1)
                return 1
            building = next((r for r in rows if r.state == "building"), None)
            if building is not None and len(rows) == 1:
                store.activate(building.generation)
                return building.generation
            raise ProjectionError(f"{store.projection.name} has generations but none is active")
        except (DatabaseError, sa.exc.IntegrityError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def start_generation(store: ProjectionStore, partitions: int, start_seq: int = 1) -> int:
    """Create a new building generation of the current code version, folding from ``start_seq``."""
    number = store.next_generation()
    store.ensure(number, partitions, start_seq)
    return number


async def build_and_swap(
    js: JetStreamContext,
    store: ProjectionStore,
    number: int,
    *,
    settings: WorkerSettings | None = None,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[BuildProgress], None] | None = None,
    check_interval: float = 0.2,
) -> bool:
    """Run building generation ``number`` until it has caught up, then swap it in atomically.

    The active generation keeps serving meanwhile (its own workers keep it live). Returns True
    once swapped (by this build or another one), False if stopped first or if the generation
    stopped being built meanwhile (rolled back after a swap, or dropped): a stale build never
    undoes an operator's decision. The workers of ``number`` stop when this returns; the
    supervisors then run it as the active generation.
    """
    stop = stop or asyncio.Event()
    rows = {r.generation: r for r in store.generations()}
    if number not in rows:
        raise ProjectionError(f"{store.projection.name} has no generation {number}")
    partitions = rows[number].partitions
    inner = asyncio.Event()
    workers = [
        Worker(js, store, generation=number, partition=p, partitions=partitions, settings=settings)
        for p in range(partitions)
    ]
    tasks = [asyncio.create_task(w.run(inner)) for w in workers]
    previous_head: int | None = None
    try:
        while not stop.is_set():
            try:
                state = await asyncio.to_thread(_state_of, store, number)
            except (DatabaseError, sa.exc.SQLAlchemyError) as error:
                log.warning("cannot read generations", error=str(error))
                state = "building"
            if state == "active":
                return True
            if state != "building":
                log.info(
                    "build ended: the generation is no longer building",
                    projection=store.projection.name,
                    generation=number,
                    state=state,
                )
                return False
            failed = [t for t in tasks if t.done()]
            if failed:
                for task in failed:
                    task.result()
                raise ProjectionError(f"a worker of {store.projection.name} g{number} stopped")
            head = await stream_head(js)
            checkpoint = min(w.progress.applied_seq for w in workers)
            if on_progress is not None:
                on_progress(
                    BuildProgress(
                        store.projection.name,
                        number,
                        checkpoint,
                        head,
                        sum(w.progress.rate() for w in workers),
                    )
                )
            # Caught up means: at the head as it was one check ago. Under sustained traffic the
            # head moves on while it is looked at, so "at the current head" may never happen;
            # activate() itself checks, atomically, that no partition is behind the active one.
            target = head if previous_head is None else min(head, previous_head)
            previous_head = head
            if checkpoint >= target:
                try:
                    await asyncio.to_thread(
                        functools.partial(store.activate, number, only_building=True)
                    )
                except (NotCaughtUp, NotBuilding, SwapBlocked):
                    pass  # not yet (or readers held it off); or someone else decided: next round
                else:
                    log.info(
                        "generation swapped in",
                        projection=store.projection.name,
                        generation=number,
                        checkpoint=checkpoint,
                    )
                    return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), check_interval)
        return False
    finally:
        inner.set()
        await asyncio.gather(*tasks, return_exceptions=True)


def _state_of(store: ProjectionStore, number: int) -> str | None:
    """The registry state of one generation (None if it does not exist)."""
    return next((r.state for r in store.generations() if r.generation == number), None)


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
        self._builds: dict[tuple[str, int], asyncio.Task[bool]] = {}

    def _wanted(self) -> set[tuple[str, int, int]]:
        wanted: set[tuple[str, int, int]] = set()
        for name, store in self.stores.items():
            rows = store.generations()
            version = store.projection.version
            active = next((r for r in rows if r.state == "active"), None)
            if active is not None and active.version == version:
                for p in range(active.partitions):
                    if self.only_partitions is None or p in self.only_partitions:
                        wanted.add((name, active.generation, p))
            elif (
                active is not None
                and active.version < version
                and not any(r.state == "building" and r.version == version for r in rows)
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
                if row.state == "building" and row.version == store.projection.version:
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
                for key in building:
                    build = self._builds.get(key)
                    if build is None or build.done():
                        self._builds[key] = asyncio.create_task(
                            build_and_swap(
                                self.js,
                                self.stores[key[0]],
                                key[1],
                                settings=self.settings,
                                stop=stop,
                            )
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
