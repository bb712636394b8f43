"""The engagement projection on the beer.stackexchange.com dump, against the oracle.

The dump is imported with the importer into a real embedded nats-server, a Worker folds the
stream into SQLite or PostgreSQL, and every table must equal the independent oracle's fold of the
events read back from the stream. A second test folds the same history on PostgreSQL in odd batch
sizes and compares with SQLite number for number.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import date
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from support.engine import DB_KINDS, database_url
from unit.test_engagement_oracle import (
    Run,
    assert_agrees,
    messages_of,
    oracle,
    plain_responsiveness,
)

from events import CODEC, STREAM, Event
from events.publisher import Publisher
from projections.engagement import queries
from projections.runner import Worker
from services.stackexchange import import_stackexchange, iter_events

BEER = Path("/work/shared/data/stackexchange-beer")

pytestmark = pytest.mark.skipif(not BEER.is_dir(), reason=f"{BEER} is not available")


async def read_stream(js: JetStreamContext, count: int) -> list[Event]:
    sub = await js.subscribe(">", ordered_consumer=True, stream=STREAM)
    events: list[Event] = []
    try:
        async with asyncio.timeout(60):
            while len(events) < count:
                events.append(CODEC.decode((await sub.next_msg(timeout=60)).data))
    finally:
        await sub.unsubscribe()
    return events


@pytest.mark.parametrize("kind", DB_KINDS)
async def test_imported_beer_dump_agrees_with_the_oracle(
    kind: str,
    nc: Client,
    js: JetStreamContext,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    summary = await import_stackexchange(BEER, Publisher(nc), "beer", work_dir=tmp_path)
    assert summary.complete and summary.failed == 0
    head = int((await js.stream_info(STREAM)).state.last_seq)
    assert head == summary.stored > 6000

    run = Run(database_url(kind, tmp_path, request))
    try:
        worker = Worker(js, run.store, generation=1)
        await asyncio.wait_for(worker.run(until_seq=head), 120)
        assert run.store.checkpoint(1) == head
        expected = oracle(await read_stream(js, head))
        found = run.read()
        assert_agrees(found, expected)
        # Not trivially equal: the dump exercises every metric.
        assert len(found.members) > 800 and len(found.cohorts) > 20
        assert sum(1 for p in found.posts.values() if p["first_reply_at"] is not None) > 200
        assert sum(1 for p in found.posts.values() if p["accepted_at"] is not None) > 100
        assert max(row[-1] for row in found.daily.values()) > 100  # MAU
        with run.engine.connect() as conn:
            days = queries.responsiveness(
                conn, "beer", date(2000, 1, 1), date(2100, 1, 1), t=run.tables
            )
        assert days == plain_responsiveness(expected, "beer") and len(days) > 40
    finally:
        run.close()


@pytest.mark.postgres
def test_postgres_equals_sqlite_in_any_batches(postgres_url: str, tmp_path: Path) -> None:
    events = list(iter_events(BEER, "beer", work_dir=tmp_path))
    messages = messages_of(events)
    lite = Run(f"sqlite:///{tmp_path / 'lite'}.db")
    pg = Run(postgres_url)
    try:
        lite.feed(messages, itertools.repeat(len(messages)))
        pg.feed(messages, itertools.cycle([997, 13, 1, 250]))
        assert pg.read() == lite.read()
        assert_agrees(pg.read(), oracle(events))
    finally:
        lite.close()
        pg.close()
