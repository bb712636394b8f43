"""Importing the beer.stackexchange.com dump into a real embedded nats-server."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agora.stream import StreamSettings, ensure_stream
from events import CODEC, STREAM, Event
from events.publisher import Publisher
from services.stackexchange import ImportProgress, import_stackexchange, iter_events

BEER = Path("/work/shared/data/stackexchange-beer")

pytestmark = pytest.mark.skipif(not BEER.is_dir(), reason=f"{BEER} is not available")


async def stream_count(js: JetStreamContext) -> int:
    return int((await js.stream_info(STREAM)).state.messages)


async def read_stream(js: JetStreamContext, timeout: float = 60.0) -> list[tuple[str, Event]]:
    """Every stored message in stream order: (Nats-Msg-Id, decoded event)."""
    count = await stream_count(js)
    sub = await js.subscribe(">", ordered_consumer=True, stream=STREAM)
    stored: list[tuple[str, Event]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(stored) < count:
                msg = await sub.next_msg(timeout=timeout)
                assert msg.headers is not None
                stored.append((msg.headers["Nats-Msg-Id"], CODEC.decode(msg.data)))
    finally:
        await sub.unsubscribe()
    return stored


async def test_import_stores_the_dump_once_and_a_second_import_nothing(
    nc: Client, js: JetStreamContext
) -> None:
    expected = [e.id for e in iter_events(BEER, "beer")]
    publisher = Publisher(nc)
    seen: list[ImportProgress] = []
    started = time.monotonic()
    first = await import_stackexchange(BEER, publisher, "beer", progress=seen.append)
    took = time.monotonic() - started

    assert first.complete and first.failed == 0 and first.duplicate == 0
    assert first.stored == len(expected) == sum(first.events.values())
    assert await stream_count(js) == len(expected)
    assert [p.published for p in seen] == sorted(p.published for p in seen)
    assert seen[-1].read == seen[-1].stored == len(expected)
    assert len(seen) == -(-len(expected) // 2_000)
    assert first.mapping.skipped_rows > 0
    assert first.mapping.accounted_rows() == sum(first.mapping.rows.values())
    info = await js.stream_info(STREAM, subjects_filter="agora.beer.>")
    per_type = Counter(
        {s.removeprefix("agora.beer."): n for s, n in (info.state.subjects or {}).items()}
    )
    assert per_type == first.events

    stored = await read_stream(js)
    assert [event.id for _, event in stored] == expected, "stream order is the dump's time order"
    assert all(msg_id == str(event.id) for msg_id, event in stored)
    times = [event.occurred_at for _, event in stored]
    assert times == sorted(times)

    second = await import_stackexchange(BEER, publisher, "beer")
    assert second.complete
    assert second.stored == 0 and second.failed == 0
    assert second.duplicate == len(expected)
    assert await stream_count(js) == len(expected)
    print(f"\nbeer import: {first.stored} events in {took:.2f}s")


async def test_a_reimport_after_the_duplicate_window_repeats_the_same_ids(nc: Client) -> None:
    window = 0.5
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings(duplicate_window=window))
    publisher = Publisher(nc)

    first = await import_stackexchange(BEER, publisher, "beer")
    await asyncio.sleep(3 * window)
    second = await import_stackexchange(BEER, publisher, "beer")

    count = first.stored
    assert first.complete and second.complete
    assert second.stored == count and second.duplicate == 0, "the server no longer dedupes them"
    stored = await read_stream(js)
    assert len(stored) == 2 * count
    first_ids = [event.id for _, event in stored[:count]]
    second_ids = [event.id for _, event in stored[count:]]
    assert first_ids == second_ids, "same ids, so the projections' event-id dedupe drops them"
    assert [event for _, event in stored[:count]] == [event for _, event in stored[count:]]


async def test_failures_are_counted_with_reasons_and_stop_the_import(nc: Client) -> None:
    # No stream: nothing answers the publishes, every event of the first chunk times out.
    publisher = Publisher(nc, ack_timeout=0.2, deadline=1.0)
    seen: list[ImportProgress] = []
    summary = await import_stackexchange(
        BEER, publisher, "beer", chunk_size=50, progress=seen.append
    )
    assert not summary.complete
    assert (summary.stored, summary.duplicate, summary.failed) == (0, 0, 50)
    assert len(seen) == 1 and seen[0].failed == 50
    assert summary.failures and all(f.reason for f in summary.failures)
    assert sum(summary.failure_reasons.values()) == 50
