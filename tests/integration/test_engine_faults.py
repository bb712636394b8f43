"""Process crashes and competing workers, with workers in child processes killed by SIGKILL.

* A worker SIGKILLed at 20 random moments while projecting 100,000 events (when its checkpoint
  passes random thresholds, or after random delays) and restarted each time ends with every table
  identical to one clean run's: exactly once, whatever instant the crash hit.
* Two workers on one partition never both apply (counts end exact); when the lock owner is
  SIGKILLed the other takes over within seconds.

On SQLite (flock writer lock, WAL) and PostgreSQL (advisory lock).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from support.engine import (
    DB_KINDS,
    checkpoint_row,
    counts,
    dump,
    make_events,
    oracle,
    postgres_database,
    publish,
    wait_until,
    wires,
)

from agora.embedded import EmbeddedNats
from projections.counts import EventCounts
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.status import read_status
from projections.store import ProjectionStore

pytestmark = pytest.mark.slow

WORKER_PROC = Path(__file__).with_name("worker_proc.py")
EVENTS = 100_000


class Databases:
    """Fresh databases of one kind for a test: SQLite files, or PostgreSQL databases."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.request = request
        self.engines: list[sa.Engine] = []
        self._drops: list[object] = []

    def new(self, name: str) -> tuple[str, sa.Engine]:
        if self.kind == "sqlite":
            url = f"sqlite:///{self.tmp_path / name}.db"
        else:
            server: str = self.request.getfixturevalue("postgres_server_url")
            url, drop = postgres_database(server)
            self._drops.append(drop)
        engine = create_engine(url)
        self.engines.append(engine)
        return url, engine

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()
        for drop in self._drops:
            drop()  # type: ignore[operator]


@pytest.fixture(params=DB_KINDS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    dbs = Databases(request.param, tmp_path, request)
    yield dbs
    dbs.close()


class Child:
    """A worker process (tests/integration/worker_proc.py)."""

    def __init__(self, nats_url: str, db_url: str, until: int, log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER_PROC),
                    "--nats",
                    nats_url,
                    "--db",
                    db_url,
                    "--until",
                    str(until),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).parents[2],
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    async def exited(self, timeout: float) -> int:
        await wait_until(lambda: not self.alive(), timeout, f"worker {self.pid} to finish", 0.05)
        code = self.process.wait()
        assert code == 0, f"worker {self.pid} exited with {code}:\n{self.log.read_text()[-3000:]}"
        return code


def checkpoint(engine: sa.Engine) -> int:
    """The checkpoint of event_counts g1 p0 (0 before the worker created anything)."""
    try:
        return int(checkpoint_row(engine, "event_counts", 1).last_seq)
    except sa.exc.NoResultFound:  # pragma: no cover - the test creates it first
        return 0


async def clean_run(js: JetStreamContext, engine: sa.Engine, until: int) -> dict[str, list[str]]:
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    await asyncio.wait_for(
        Worker(js, store, generation=1, settings=WorkerSettings(lock_poll=0.1)).run(
            until_seq=until
        ),
        180,
    )
    return dump(engine)


async def test_sigkill_at_random_moments_ends_identical_to_a_clean_run(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    databases: Databases,
    tmp_path: Path,
) -> None:
    events = make_events(EVENTS, communities=16, seed=11)
    seqs = await publish(js, wires(events))
    crash_url, crash_engine = databases.new("crashed")
    _, clean_engine = databases.new("clean")
    ProjectionStore(crash_engine, EventCounts()).ensure(1)

    rng = random.Random(20261126)
    # Kill points: when the checkpoint passes a random threshold; at a random instant once the
    # worker is applying; at a random instant of its start (lock, checkpoint, subscription).
    plan = ["threshold"] * 9 + ["applying"] * 8 + ["starting"] * 3
    rng.shuffle(plan)
    log = tmp_path / "workers.log"
    previous = 0
    kills = mid_run = 0
    for step in plan:
        before = checkpoint(crash_engine)
        child = Child(nats_server.url, crash_url, EVENTS, log)
        if step == "threshold":
            target = before + rng.randrange(500, 4_000)
            await wait_until(
                lambda: checkpoint(crash_engine) >= target or not child.alive(),  # noqa: B023
                60,
                f"the checkpoint to pass {target}",
                0.005,
            )
        elif step == "applying":
            await wait_until(
                lambda: checkpoint(crash_engine) > before or not child.alive(),  # noqa: B023
                60,
                "the worker to apply a batch",
                0.005,
            )
            await asyncio.sleep(rng.uniform(0, 0.1))
        else:
            await asyncio.sleep(rng.uniform(0.05, 0.8))
        if child.alive():
            kills += 1
        child.kill()
        now = checkpoint(crash_engine)
        assert now >= previous, "a committed checkpoint went backwards"
        mid_run += before < now < EVENTS
        previous = now
    assert kills >= 15, "most kills must hit a live worker"
    assert mid_run >= 14, "most kills must hit a worker in the middle of the stream"

    await Child(nats_server.url, crash_url, EVENTS, log).exited(120)
    expected = await clean_run(js, clean_engine, EVENTS)
    assert dump(crash_engine) == expected
    assert counts(crash_engine) == oracle(zip(seqs, events, strict=True))
    assert tuple(checkpoint_row(crash_engine, "event_counts", 1)) == (EVENTS, EVENTS, 0, 0)


def owner_pid(engine: sa.Engine) -> int | None:
    """The pid of the worker that last wrote the partition's status row, if any."""
    rows = read_status(engine, "event_counts")
    if not rows or rows[0].worker is None:
        return None
    return int(rows[0].worker.rsplit(":", 1)[1])


async def test_two_workers_one_applies_and_the_other_takes_over_when_it_dies(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    databases: Databases,
    tmp_path: Path,
) -> None:
    events = make_events(EVENTS, communities=16, seed=12)
    seqs = await publish(js, wires(events))
    url, engine = databases.new("shared")
    ProjectionStore(engine, EventCounts()).ensure(1)
    log = tmp_path / "workers.log"
    children = [Child(nats_server.url, url, EVENTS, log) for _ in range(2)]
    try:
        by_pid = {c.pid: c for c in children}
        await wait_until(
            lambda: owner_pid(engine) in by_pid and checkpoint(engine) >= EVENTS // 5,
            60,
            "one worker to own the partition and apply",
            0.005,
        )
        owner = by_pid[owner_pid(engine)]  # type: ignore[index]
        other = next(c for c in children if c is not owner)
        assert other.alive(), "the other worker must be waiting for the lock"
        owner.kill()
        killed_at = checkpoint(engine)
        assert killed_at < EVENTS, "the owner must die before the end"
        took = await wait_until(
            lambda: checkpoint(engine) > killed_at,
            30,
            "the waiting worker to take over",
            0.01,
        )
        assert took < 15, f"take-over took {took:.1f}s"
        assert owner_pid(engine) == other.pid
        await other.exited(120)
    finally:
        for child in children:
            child.kill()
    assert counts(engine) == oracle(zip(seqs, events, strict=True))
    assert tuple(checkpoint_row(engine, "event_counts", 1)) == (EVENTS, EVENTS, 0, 0)
