"""The publisher across nats-server crashes: kill -9 and restart on the same port and store.

After the storm the stream must hold every event exactly once, and every result the publisher
reported must be true: STORED or DUPLICATE with a sequence that holds that very event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agora.embedded import EmbeddedNats
from events import CODEC, STREAM, Event, PostCreated, ReactionAdded, ReplyCreated
from events.errors import PublishTimeout
from events.publisher import Publisher, PublishResult, PublishStatus

T0 = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def make_events(n: int) -> list[Event]:
    events: list[Event] = []
    for i in range(n):
        common: dict[str, Any] = {
            "id": uuid.uuid4(),
            "community": f"c{i % 7}",
            "actor": f"m{i % 101}",
            "occurred_at": T0 + timedelta(milliseconds=i),
        }
        if i % 3 == 0:
            events.append(PostCreated(**common, post=f"p{i}", title=f"Post {i}", body="b" * 200))
        elif i % 3 == 1:
            events.append(ReplyCreated(**common, reply=f"r{i}", post="p0", post_author="m1"))
        else:
            events.append(
                ReactionAdded(
                    **common, target="p0", target_kind="post", target_author="m1", kind="like"
                )
            )
    return events


async def read_stream(js: JetStreamContext, timeout: float = 30.0) -> dict[int, tuple[str, Event]]:
    """Every stored message by stream sequence: (Nats-Msg-Id, decoded event)."""
    count = int((await js.stream_info(STREAM)).state.messages)
    sub = await js.subscribe(">", ordered_consumer=True, stream=STREAM)
    stored: dict[int, tuple[str, Event]] = {}
    try:
        async with asyncio.timeout(timeout):
            while len(stored) < count:
                msg = await sub.next_msg(timeout=timeout)
                assert msg.headers is not None
                stored[msg.metadata.sequence.stream] = (
                    msg.headers["Nats-Msg-Id"],
                    CODEC.decode(msg.data),
                )
    finally:
        await sub.unsubscribe()
    return stored


async def assert_exactly_once(
    js: JetStreamContext, events: list[Event], results: list[PublishResult]
) -> None:
    stored = await read_stream(js)
    ids = [event.id for _, event in stored.values()]
    assert len(ids) == len(events), "stream holds a wrong number of events"
    assert set(ids) == {e.id for e in events}, "stream lacks events or holds strangers"
    for msg_id, event in stored.values():
        assert msg_id == str(event.id)
    assert len(results) == len(events)

    for result, event in zip(results, events, strict=True):
        assert result.event_id == event.id
        assert result.status in (PublishStatus.STORED, PublishStatus.DUPLICATE), result
        assert result.seq is not None and result.seq in stored, result
        assert stored[result.seq][1] == event, f"seq {result.seq} holds another event"


async def stream_messages(js: JetStreamContext) -> int:
    """The stream's message count, or -1 while the server is down or still recovering."""
    try:
        return int((await js.stream_info(STREAM)).state.messages)
    except (nats.errors.Error, nats.js.errors.Error):
        await asyncio.sleep(0.01)
        return -1


async def test_kill_and_restart_in_the_middle_of_publish_many(
    nats_server: EmbeddedNats, nc: Client, js: JetStreamContext
) -> None:
    events = make_events(10_000)
    publisher = Publisher(nc, ack_timeout=1.0, deadline=45.0)
    seen = 0
    killed = asyncio.Event()
    in_flight_at_kill: list[int] = []

    async def count(msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen == 1_500 and not killed.is_set():
            nats_server.kill()
            in_flight_at_kill.append(publisher.in_flight)
            killed.set()

    watcher = await nats.connect(nats_server.url, allow_reconnect=False)
    await watcher.subscribe("agora.>", cb=count)
    await watcher.flush()
    task = asyncio.create_task(publisher.publish_many(events))
    try:
        await asyncio.wait_for(killed.wait(), timeout=30)
        await watcher.close()
        assert in_flight_at_kill[0] > 0, "nothing was in flight at the kill: nothing was tested"
        await asyncio.to_thread(nats_server.start)
        results = await asyncio.wait_for(task, timeout=50)
    finally:
        task.cancel()
        await watcher.close()
    await assert_exactly_once(js, events, results)
    assert publisher.in_flight == 0


async def test_two_crashes_during_one_batch(
    nats_server: EmbeddedNats, nc: Client, js: JetStreamContext
) -> None:
    events = make_events(10_000)
    publisher = Publisher(nc, ack_timeout=0.5, deadline=45.0)
    probe = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.05)
    task = asyncio.create_task(publisher.publish_many(events))
    try:
        probe_js = probe.jetstream()
        for threshold in (2_000, 6_000):
            async with asyncio.timeout(30):
                while await stream_messages(probe_js) < threshold:
                    assert not task.done(), "the batch ended before the kill"
            nats_server.kill()
            await asyncio.to_thread(nats_server.start)
        results = await asyncio.wait_for(task, timeout=50)
    finally:
        task.cancel()
        await probe.close()
    await assert_exactly_once(js, events, results)


async def test_outage_longer_than_the_deadline_fails_fast_and_never_hangs(
    nats_server: EmbeddedNats, nc: Client, js: JetStreamContext
) -> None:
    publisher = Publisher(nc, ack_timeout=0.2, deadline=1.0, max_in_flight=100)
    nats_server.kill()
    events = make_events(1_000)
    started = time.monotonic()
    results = await asyncio.wait_for(publisher.publish_many(events), timeout=10)
    assert time.monotonic() - started < 3.0
    assert {r.status for r in results} == {PublishStatus.FAILED}
    not_sent = [r for r in results if r.error is not None and r.error.startswith("not sent: ")]
    assert len(not_sent) >= 800, "events after the first expired ones should not wait their turn"
    assert publisher.in_flight == 0
    with pytest.raises(PublishTimeout, match=r"no acknowledgement within 1\.0s"):
        await publisher.publish(events[0])
    await asyncio.to_thread(nats_server.start)
    retried = await Publisher(nc).publish_many(events)
    await assert_exactly_once(js, events, retried)


async def test_publish_during_a_restart_is_retried(
    nats_server: EmbeddedNats, nc: Client, js: JetStreamContext
) -> None:
    publisher = Publisher(nc, ack_timeout=0.5, deadline=30.0)
    events = make_events(500)
    first = await publisher.publish(events[0])
    nats_server.kill()
    pending = asyncio.create_task(publisher.publish_many(events[1:]))
    single = asyncio.create_task(publisher.publish(events[0]))
    try:
        await asyncio.to_thread(nats_server.start)
        results = await asyncio.wait_for(pending, timeout=40)
        again = await asyncio.wait_for(single, timeout=40)
    finally:
        pending.cancel()
        single.cancel()
    assert first.status is PublishStatus.STORED
    assert again == PublishResult(first.event_id, PublishStatus.DUPLICATE, first.subject, first.seq)
    await assert_exactly_once(js, events, [first, *results])
