"""A frozen owner (SIGSTOP, a stuck VM) loses its partitions once its writer lease expires.

The owner process keeps its database session or lock file, and so its lock, while it is
stopped; its lease is no longer renewed, `agora status` says its partitions are stale (not ok),
and a standby takes them over. Resumed, the stale owner is refused: it applies nothing more and
stands by. Every event is applied exactly once (on SQLite and PostgreSQL).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from integration.test_cli_engine import cli_env
from nats.js import JetStreamContext
from support.engine import (
    DB_KINDS,
    counts,
    database_url,
    make_events,
    oracle,
    publish,
    wait_until,
    wires,
)

from agora.embedded import EmbeddedNats
from projections.counts import EventCounts
from projections.database import create_engine
from projections.status import read_status
from projections.store import ProjectionStore

WORKER_PROC = Path(__file__).with_name("worker_proc.py")
PARTITIONS = 3
LEASE = 2.0


class Owner:
    """A worker process running every partition of event_counts g1 (worker_proc.py)."""

    def __init__(self, name: str, nats_url: str, db_url: str, until: int, tmp_path: Path) -> None:
        self.log = tmp_path / f"{name}.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER_PROC),
                    *("--nats", nats_url, "--db", db_url, "--until", str(until)),
                    *("--partitions", str(PARTITIONS), "--all-partitions"),
                    *("--lease", str(LEASE)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).parents[2],
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text()

    def applied(self) -> int:
        """The events this process applied, from its last line (after it exited)."""
        line = self.output().strip().splitlines()[-1]
        assert line.startswith("applied "), self.output()[-3000:]
        return int(line.split()[1])

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait()


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, tmp_path, request)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def freeze_between_writes(owner: Owner, engine: sa.Engine) -> bool:
    """SIGSTOP ``owner``; on SQLite, resume it and say False if it froze holding the write lock.

    A process frozen in the middle of a SQLite write transaction holds the database's write lock:
    every writer waits until it resumes or dies (docs/operations.md), a case no lease can help.
    """
    os.kill(owner.pid, signal.SIGSTOP)
    if engine.dialect.name != "sqlite":
        return True
    probe = sqlite3.connect(str(engine.url.database), timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        os.kill(owner.pid, signal.SIGCONT)
        return False
    finally:
        probe.close()


def writers(engine: sa.Engine) -> dict[int, int]:
    """Partition -> pid of the worker that last wrote its status row."""
    return {
        r.partition: int(r.worker.rsplit(":", 1)[1])
        for r in read_status(engine, "event_counts")
        if r.worker
    }


def checkpoints(engine: sa.Engine) -> list[int]:
    store = ProjectionStore(engine, EventCounts())
    return [store.checkpoint(1, p) for p in range(PARTITIONS)]


async def test_a_frozen_owner_is_taken_over_and_fenced_when_it_resumes(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    engine: sa.Engine,
    db_url: str,
    tmp_path: Path,
) -> None:
    batches = [
        make_events(300, communities=12, seed=71, tag="before"),
        make_events(300, communities=12, seed=72, tag="frozen"),
        make_events(300, communities=12, seed=73, tag="resumed"),
    ]
    total = sum(len(b) for b in batches)
    ProjectionStore(engine, EventCounts()).ensure(1, PARTITIONS)
    seqs = await publish(js, wires(batches[0]))
    cli = cli_env(nats_server.url, tmp_path, db_url)
    first = Owner("first", nats_server.url, db_url, total, tmp_path)
    second: Owner | None = None
    try:
        await wait_until(
            lambda: (
                checkpoints(engine) == [seqs[-1]] * PARTITIONS
                and set(writers(engine).values()) == {first.pid}
                and len(writers(engine)) == PARTITIONS
            ),
            60,
            "the first worker to own every partition and apply the first events",
            detail=first.output,
        )
        await wait_until(
            lambda: freeze_between_writes(first, engine),
            60,
            "the first worker frozen outside a write transaction",
        )

        # Frozen, it keeps its session and its locks; its lease expires: status is not ok.
        async def stale() -> bool:
            result = await cli("status", "--json")
            rows = [r for r in result.json()["partitions"] if r["generation"] == 1]
            return len(rows) == PARTITIONS and all(r["stale"] for r in rows)

        await wait_until(stale, 60, "status to call the frozen owner's partitions stale", 0.2)
        result = await cli("status", "--json")
        assert result.json()["ok"] is False
        assert result.code == 1

        # A standby takes every partition over (within the lease, see docs/operations.md).
        second = Owner("second", nats_server.url, db_url, total, tmp_path)
        seqs += await publish(js, wires(batches[1]))
        await wait_until(
            lambda: (
                checkpoints(engine) == [seqs[-1]] * PARTITIONS
                and set(writers(engine).values()) == {second.pid}
            ),
            60,
            "the standby to take over every partition of the frozen owner",
            detail=lambda: f"{checkpoints(engine)} {writers(engine)}\n{second.output()[-3000:]}",
        )
        document = (await cli("status", "--json")).json()
        assert document["ok"] is True
        assert not any(r["stale"] for r in document["partitions"])

        # Resumed, the stale owner is refused; the standby applies the rest.
        os.kill(first.pid, signal.SIGCONT)
        seqs += await publish(js, wires(batches[2]))
        await wait_until(
            lambda: second.process.poll() is not None and first.process.poll() is not None,
            60,
            "both workers to reach the end and exit",
            detail=lambda: first.output()[-2000:] + second.output()[-2000:],
        )
        assert first.process.returncode == 0, first.output()[-3000:]
        assert second.process.returncode == 0, second.output()[-3000:]
        assert first.applied() == len(batches[0]), "the resumed stale owner applied events"
        assert second.applied() == len(batches[1]) + len(batches[2])
    finally:
        first.close()
        if second is not None:
            second.close()
    events = [e for b in batches for e in b]
    assert counts(engine) == oracle(zip(seqs, events, strict=True))
    with engine.connect() as conn:
        applied, duplicates, dead = conn.execute(
            sa.text(
                "SELECT sum(events), sum(duplicates), sum(dead_letters) FROM agora_checkpoints"
                " WHERE projection = 'event_counts' AND generation = 1"
            )
        ).one()
    assert (int(applied), int(duplicates), int(dead)) == (total, 0, 0)
