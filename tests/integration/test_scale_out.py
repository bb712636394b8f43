"""Scaling out by partitions: two `agora worker` processes over eight partitions on PostgreSQL.

Both processes run every partition; the database's single-writer locks decide who writes each.
When the process that owns partitions is SIGKILLed, the other takes all of them over, and the
tables end equal to a single worker's fold of the same events (the oracle), nothing counted
twice or lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa
from integration.test_cli_engine import cli_env
from nats.js import JetStreamContext
from support.engine import (
    counts,
    make_events,
    oracle,
    postgres_database,
    publish,
    wait_until,
    wires,
)

from agora.embedded import EmbeddedNats
from projections.database import create_engine
from projections.status import read_status

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EVENTS = 100_000
PARTITIONS = 8


def writers(engine: sa.Engine) -> dict[int, int | None]:
    """Partition -> pid of the process that last wrote its status row (generation 1)."""
    try:
        rows = read_status(engine, "event_counts")
    except sa.exc.SQLAlchemyError:  # the first worker has not created the tables yet
        return {}
    return {
        r.partition: int(r.worker.rsplit(":", 1)[1]) if r.worker else None
        for r in rows
        if r.generation == 1
    }


def checkpoints(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return [
            int(v)
            for v in conn.execute(
                sa.text(
                    "SELECT last_seq FROM agora_checkpoints "
                    "WHERE projection = 'event_counts' AND generation = 1 ORDER BY partition"
                )
            ).scalars()
        ]


async def test_two_processes_share_partitions_and_one_takes_over_when_the_other_dies(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    postgres_server_url: str,
    tmp_path: Path,
) -> None:
    events = make_events(EVENTS, communities=32, seed=31)
    seqs = await publish(js, wires(events))
    head = seqs[-1]
    url, drop = postgres_database(postgres_server_url)
    engine = create_engine(url)
    cli = cli_env(nats_server.url, tmp_path, url)
    args = ("worker", "event_counts", "--partitions", str(PARTITIONS))
    first = cli.start("first", *args)
    second = None
    try:
        await wait_until(
            lambda: (
                set(writers(engine).values()) == {first.process.pid}
                and len(writers(engine)) == PARTITIONS
            ),
            60,
            "the first worker to write all 8 partitions",
        )
        second = cli.start("second", *args)
        assert min(checkpoints(engine)) < head, "the first worker must die before the end"
        os.kill(first.process.pid, signal.SIGKILL)
        first.close()

        def taken_over() -> bool:
            return (
                set(writers(engine).values()) == {second.process.pid}
                and checkpoints(engine) == [head] * PARTITIONS
            )

        await wait_until(taken_over, 120, "the second worker to finish every partition")
        assert second.running()
        assert await second.stop() == 0
    finally:
        first.close()
        if second is not None:
            second.close()
    try:
        assert counts(engine, "event_counts__g1") == oracle(zip(seqs, events, strict=True))
        with engine.connect() as conn:
            applied, duplicates, dead = conn.execute(
                sa.text(
                    "SELECT sum(events), sum(duplicates), sum(dead_letters) FROM agora_checkpoints"
                    " WHERE projection = 'event_counts' AND generation = 1"
                )
            ).one()
        assert (int(applied), int(duplicates), int(dead)) == (EVENTS, 0, 0)
    finally:
        engine.dispose()
        await asyncio.to_thread(drop)
